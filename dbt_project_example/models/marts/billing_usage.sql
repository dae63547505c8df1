-- Metered usage per account and calendar month, for the billing system.
-- Billed in units of 1,000 API calls (rounded up).
with events as (
    select * from {{ ref('usage_events') }}
),

monthly as (
    select
        account_id,
        cast(date_trunc('month', usage_date) as date) as period_start,
        cast(sum(api_calls) as bigint)                as api_calls,
        max(active_seats)                             as peak_active_seats
    from events
    group by 1, 2
)

select
    account_id || '-' || {{ year_month('period_start') }} as usage_id,
    account_id,
    period_start,
    api_calls,
    peak_active_seats,
    cast(ceil(api_calls / 1000.0) as integer)           as quantity
from monthly
