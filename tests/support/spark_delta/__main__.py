"""``python -m tests.support.spark_delta``: fetch the Delta jars if missing, print spark.jars."""

from tests.support.spark_delta import spark_jars

print(spark_jars())
