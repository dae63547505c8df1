-- Leads enriched with product usage and scored for sales.
--   hot:  more than 100 page views and fewer than 7 trial days left
--   warm: more than 50 page views
--   cold: everything else (including leads who never used the product)
with leads as (
    select * from {{ ref('stg_leads') }}
),

usage as (
    select * from {{ ref('stg_product_usage') }}
)

select
    leads.email,
    leads.company,
    leads.first_name,
    leads.last_name,
    coalesce(usage.page_views, 0)                   as page_views,
    usage.trial_days_remaining,
    coalesce(usage.features_used, {{ empty_text_list() }}) as features_used,
    -- the source records UTC wall-clock times: attach the zone explicitly so the
    -- result does not depend on the session's TimeZone setting
    cast(timezone('UTC', usage.last_active_at_utc) as timestamptz) as last_active_at,
    case
        when coalesce(usage.page_views, 0) > 100
             and usage.trial_days_remaining < 7 then 'hot'
        when coalesce(usage.page_views, 0) > 50 then 'warm'
        else 'cold'
    end                                             as lead_score
from leads
left join usage
    on leads.email = usage.email
