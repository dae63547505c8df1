{#- The few expressions whose SQL differs between the warehouses this example builds on:
    DuckDB (dbt-duckdb, the default) and PostgreSQL (dbt-postgres; docs/warehouses.md).
    dbt picks `<adapter>__<name>`, else `default__<name>`. -#}

{#- An empty list of text. -#}
{% macro empty_text_list() -%}
    {{ return(adapter.dispatch('empty_text_list')()) }}
{%- endmacro %}
{% macro default__empty_text_list() -%} []::varchar[] {%- endmacro %}
{% macro postgres__empty_text_list() -%} array[]::varchar[] {%- endmacro %}

{#- Splits text at a delimiter into a list of text. -#}
{% macro split_to_list(text, delimiter) -%}
    {{ return(adapter.dispatch('split_to_list')(text, delimiter)) }}
{%- endmacro %}
{% macro default__split_to_list(text, delimiter) -%} string_split({{ text }}, {{ delimiter }}) {%- endmacro %}
{% macro postgres__split_to_list(text, delimiter) -%} string_to_array({{ text }}, {{ delimiter }}) {%- endmacro %}

{#- A date as `YYYY-MM` text. -#}
{% macro year_month(date) -%}
    {{ return(adapter.dispatch('year_month')(date)) }}
{%- endmacro %}
{% macro default__year_month(date) -%} strftime({{ date }}, '%Y-%m') {%- endmacro %}
{% macro postgres__year_month(date) -%} to_char({{ date }}, 'YYYY-MM') {%- endmacro %}
