-- One row per lead captured by the website and sales team.
select
    lower(trim(email))  as email,
    company,
    first_name,
    last_name,
    upper(country)      as country,
    created_at
from {{ ref('leads') }}
