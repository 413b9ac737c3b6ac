{#-
    landing_file_listing(pattern)

    A relation (a table function or a parenthesised select) with one column `file`: the paths
    of the files that match the glob `pattern` (`*` within one path component), as the engine
    reads them back in `source_file`. A pattern that matches nothing gives no rows, not an error.
-#}
{% macro landing_file_listing(pattern) -%}
    {{ return(adapter.dispatch('landing_file_listing')(pattern)) }}
{%- endmacro %}

{% macro default__landing_file_listing(pattern) -%}
    glob('{{ pattern | replace("'", "''") }}')
{%- endmacro %}


{#-
    Spark fails on a glob that matches nothing ("Path does not exist"), and a landing directory
    is missing until its first file lands. So the landing root (FITLAKE_LANDING_ROOT, the same
    default as models/bronze/__sources.yml; it must exist) is listed recursively, and the paths
    are matched against the pattern as a regular expression. Paths come back as Spark writes
    them: absolute, normalised, local files without the `file:` scheme.
-#}
{% macro spark__landing_file_listing(pattern) -%}
    {%- set root = env_var(
        'FITLAKE_LANDING_ROOT',
        ('../' if env_var('PWD', '').rstrip('/').endswith('/dbt_project') else '') ~ 'data/landing'
    ).rstrip('/') -%}
    {%- if not pattern.startswith(root ~ '/') -%}
        {{ exceptions.raise_compiler_error(
            "landing pattern " ~ pattern ~ " is not under the landing root " ~ root
            ~ " (FITLAKE_LANDING_ROOT): the spark target lists only that directory") }}
    {%- endif -%}
    {%- set relative_glob = pattern[root | length + 1:] -%}
    {%- set absolute_root = _spark_absolute_path(root) -%}
    {#- \Q...\E quotes literal text in a Java regex; backslashes are doubled for the SQL literal -#}
    {%- set ns = namespace(regex='^' ~ ('(file:)?' if absolute_root.startswith('/') else '') ~ '\\\\Q' ~ absolute_root ~ '/\\\\E') -%}
    {%- for part in modules.re.split('([*?])', relative_glob) -%}
        {%- if part == '*' -%}
            {%- set ns.regex = ns.regex ~ '[^/]*' -%}
        {%- elif part == '?' -%}
            {%- set ns.regex = ns.regex ~ '[^/]' -%}
        {%- elif part -%}
            {%- set ns.regex = ns.regex ~ '\\\\Q' ~ part ~ '\\\\E' -%}
        {%- endif -%}
    {%- endfor -%}
    (
        select regexp_replace(path, '^file:', '') as file
        from binaryFile.`{{ absolute_root | replace('`', '``') }}` with ('recursiveFileLookup' = 'true')
        where path rlike '{{ (ns.regex ~ '$') | replace("'", "\\'") }}'
    )
{%- endmacro %}


{#- an absolute, normalised form of a local path (relative to the shell's working directory, as
    dbt and Spark resolve it); a URI (abfss://..., s3a://...) is returned as it is -#}
{% macro _spark_absolute_path(path) -%}
    {%- if '://' in path or path.startswith('file:') -%}
        {{ return(path) }}
    {%- endif -%}
    {%- set full = path if path.startswith('/') else env_var('PWD', '') ~ '/' ~ path -%}
    {%- set parts = [] -%}
    {%- for segment in full.split('/') -%}
        {%- if segment == '..' -%}
            {%- if parts -%}{%- do parts.pop() -%}{%- endif -%}
        {%- elif segment not in ['', '.'] -%}
            {%- do parts.append(segment) -%}
        {%- endif -%}
    {%- endfor -%}
    {{ return('/' ~ parts | join('/')) }}
{%- endmacro %}
