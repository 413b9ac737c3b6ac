{#-
    Reading a list of Parquet files (all of one schema) as one relation:

    parquet_files_scan(files)
        A FROM-clause relation over exactly `files` (paths as landing_file_listing returns
        them; at least one).
    parquet_scan_file_name()
        The column expression, inside a select from parquet_files_scan, holding the path of the
        row's file, as landing_file_listing wrote it.
-#}
{% macro parquet_files_scan(files) -%}
    {{ return(adapter.dispatch('parquet_files_scan')(files)) }}
{%- endmacro %}

{% macro parquet_scan_file_name() -%}
    {{ return(adapter.dispatch('parquet_scan_file_name')()) }}
{%- endmacro %}


{% macro default__parquet_files_scan(files) -%}
    read_parquet(
        [{%- for f in files %}'{{ f | replace("'", "''") }}'{{ ', ' if not loop.last }}{% endfor -%}],
        filename = true
    )
{%- endmacro %}

{% macro default__parquet_scan_file_name() -%}
    filename
{%- endmacro %}


{#- Spark reads several paths in SQL only through one Hadoop glob: the files' common directory
    followed by the alternatives {a,b,...} (glob characters in the names escaped). -#}
{% macro spark__parquet_files_scan(files) -%}
    {%- set first = files[0].split('/')[:-1] -%}
    {%- set ns = namespace(depth=first | length) -%}
    {%- for f in files -%}
        {%- set parts = f.split('/') -%}
        {%- for i in range(first | length) -%}
            {%- if i < ns.depth and (parts | length <= i + 1 or parts[i] != first[i]) -%}
                {%- set ns.depth = i -%}
            {%- endif -%}
        {%- endfor -%}
    {%- endfor -%}
    {%- set prefix = first[:ns.depth] | join('/') -%}
    {%- set alternatives = [] -%}
    {%- for f in files -%}
        {%- do alternatives.append(modules.re.sub('([\\\\{}\\[\\]*?,^])', '\\\\\\1', f[prefix | length + 1:])) -%}
    {%- endfor -%}
    parquet.`{{ (prefix ~ '/{' ~ alternatives | join(',') ~ '}') | replace('`', '``') }}`
{%- endmacro %}

{% macro spark__parquet_scan_file_name() -%}
    regexp_replace(_metadata.file_path, '^file:', '')
{%- endmacro %}
