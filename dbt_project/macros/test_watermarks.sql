{#-
    Test watermarks: lets a key test on a 10M-row table check only the rows written since the
    last run in which that same test passed, instead of the whole table on every run.

    dbt_meta.test_watermarks holds, per (relation, test), the greatest `load_time` the table had
    when the test last passed. Why checking `load_time > watermark` is complete:
      * the models that use it write every new or changed row with a load_time greater than the
        greatest load_time already in the table (bronze stamps the current time; silver models
        carry the bronze load_time of the rows they process, which is after their watermark;
        workout_bpm stamps a rebuilt workout with the load_time of the change that triggered it);
      * so when the test passed at watermark W the table was correct, and any violation created
        since involves a row with load_time > W (for uniqueness: at least one of the duplicates);
      * the watermark advances only when the test passes (on-run-end, record_test_watermarks):
        a run whose test fails keeps the old one, so the next run checks the failed run's rows
        again (and fails again until the data is fixed);
      * a model built from scratch (first run, --full-refresh, table dropped) forgets its
        watermarks in a pre-hook (forget_test_watermarks), so the next test checks everything.
-#}

{#- one statement per call: Spark runs a single statement at a time; on Spark the table is Delta
    (the profile's spark.sql.sources.default), so rows can be deleted -#}
{% macro create_test_watermarks() -%}
    {%- if execute -%}
        {%- do run_query('create schema if not exists dbt_meta') -%}
    {%- endif %}
    create table if not exists dbt_meta.test_watermarks (
        relation string not null,
        test string not null,
        watermark timestamp,
        recorded_at timestamp
    )
{%- endmacro %}


{#- pre-hook of the incremental models: a table built from scratch may hold old load_times. The
    delete runs only when there is a watermark to forget (a Delta DELETE costs a transaction). -#}
{% macro forget_test_watermarks() -%}
    {%- if execute and model.config.materialized == 'incremental' and not is_incremental() -%}
        {%- set relation = this.schema ~ '.' ~ this.identifier -%}
        {%- set found = run_query(
            "select count(*) from dbt_meta.test_watermarks where relation = '" ~ relation ~ "'"
        ).columns[0].values()[0] -%}
        {%- if found > 0 %}
        delete from dbt_meta.test_watermarks
        where relation = '{{ relation }}'
        {%- endif -%}
    {%- endif -%}
{%- endmacro %}


{#- the watermark of a test as a string literal, or none (never passed: check everything) -#}
{% macro test_watermark(relation, test_key) -%}
    {%- if not execute -%}
        {{ return(none) }}
    {%- endif -%}
    {%- set query -%}
        select cast(max(watermark) as string)
        from dbt_meta.test_watermarks
        where relation = '{{ relation.schema }}.{{ relation.identifier }}' and test = '{{ test_key }}'
    {%- endset -%}
    {{ return(run_query(query).columns[0].values()[0]) }}
{%- endmacro %}


{% macro watermarked_test_key(test_name, columns) -%}
    {{- test_name ~ '(' ~ (columns | join(',')) ~ ')' -}}
{%- endmacro %}


{#- on-run-end: advance the watermark of every watermarked test that passed in this run -#}
{% macro record_test_watermarks(results) -%}
    {%- if execute -%}
        {%- for r in results -%}
            {%- set node = r.node -%}
            {%- if node.resource_type == 'test' and (r.status | string) == 'pass'
                and node.test_metadata is not none
                and node.test_metadata.name == 'unique_combination_since_last_pass' -%}
                {%- set tested = graph.nodes.get(node.attached_node) -%}
                {%- if tested is not none -%}
                    {%- set relation = tested.schema ~ '.' ~ tested.alias -%}
                    {%- set kwargs = node.test_metadata.kwargs -%}
                    {%- set test_key = watermarked_test_key(node.test_metadata.name, kwargs.combination_of_columns) -%}
                    {%- set column = kwargs.get('watermark_column') or 'load_time' -%}
                    {%- do run_query(
                        "delete from dbt_meta.test_watermarks where relation = '" ~ relation
                        ~ "' and test = '" ~ escape_single_quotes(test_key) ~ "'"
                    ) -%}
                    {%- do run_query(
                        "insert into dbt_meta.test_watermarks select '" ~ relation ~ "', '"
                        ~ escape_single_quotes(test_key) ~ "', max(" ~ quote_column(column) ~ "), "
                        ~ current_timestamp_utc() ~ " from " ~ tested.relation_name
                    ) -%}
                {%- endif -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endif -%}
{%- endmacro %}
