# Spark for the dbt `spark` target (docker-compose.yml, profile `spark`): the standalone master, the
# workers and the Thrift server the transform's dbt talks to, all from this one image. Spark is the
# pyspark wheel pinned in requirements-spark.txt (it ships the Thrift server), Delta Lake the jars
# pinned in tests/support/spark_delta/pom.xml: the versions the tests run here.
FROM maven:3.9-eclipse-temurin-17 AS delta-jars
COPY tests/support/spark_delta/pom.xml /build/pom.xml
RUN mvn -B -q -f /build/pom.xml dependency:copy-dependencies -DoutputDirectory=/build/libs -DincludeScope=runtime

FROM python:3.11-slim-bookworm
RUN apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && apt-get clean && rm -rf /var/lib/apt/lists/*
COPY requirements-spark.txt /tmp/requirements-spark.txt
RUN pip install --no-cache-dir "$(grep -E '^pyspark==' /tmp/requirements-spark.txt)"
ENV SPARK_HOME=/usr/local/lib/python3.11/site-packages/pyspark
ENV PATH=$SPARK_HOME/bin:$PATH \
    SPARK_NO_DAEMONIZE=1
# on every JVM's classpath (driver, executors): Delta tables without per-job --jars
COPY --from=delta-jars /build/libs/*.jar $SPARK_HOME/jars/
# the confs every spark-submit here reads: Delta, and the SQL semantics the dbt project is written for
COPY dags/deploy/spark-defaults.conf $SPARK_HOME/conf/spark-defaults.conf
RUN useradd --uid 185 --create-home spark \
 && mkdir -p /opt/fitlake/spark/warehouse /opt/fitlake/data/landing \
 && chown -R spark /opt/fitlake/spark
USER spark
WORKDIR /opt/fitlake/spark
