-- Tables that the `ci` target of activate.yml writes to in PostgreSQL.
-- dbt-activate never creates destination tables: a postgres destination's
-- object must exist, and its mapped field names are the table's columns.
-- Idempotent: safe to run any number of times.
--
--   psql "$ACTIVATE_PG_URL" -v ON_ERROR_STOP=1 -f ops/postgres_tables.sql

-- enriched_leads -> crm.Lead (upsert matched on "Email")
create schema if not exists crm;

create table if not exists crm."Lead" (
    "Email"                    text primary key,
    "Company"                  text,
    "Lead_Score__c"            text,
    "Features_Used__c"         jsonb,
    "Last_Product_Activity__c" timestamptz,
    "LeadSource"               text
);

-- high_value_at_risk -> marketing.high_value_at_risk (mirror matched on account_id)
create schema if not exists marketing;

create table if not exists marketing.high_value_at_risk (
    account_id   text primary key,
    email        text,
    account_name text,
    mrr          numeric(12, 2)
);
