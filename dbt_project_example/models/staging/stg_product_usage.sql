-- One row per trial user: product engagement from the app's event pipeline.
-- `features_used` arrives as a pipe-separated string ("reports|api|sso") and
-- leaves as a LIST of varchar; the seed's timestamps are UTC wall-clock times.
select
    lower(trim(email))                                       as email,
    page_views,
    trial_days_remaining,
    coalesce({{ split_to_list("nullif(features_used, '')", "'|'") }}, {{ empty_text_list() }}) as features_used,
    last_active_at                                           as last_active_at_utc
from {{ ref('product_usage') }}
