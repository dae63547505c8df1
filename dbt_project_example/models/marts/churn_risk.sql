-- Churn risk per account, from product health, recency and support load.
--   churn_risk_score = 0.5 * (1 - health_score / 100)
--                    + 0.3 * min(days_since_login, 60) / 60
--                    + 0.2 * min(open_tickets, 10) / 10          (0 = safe, 1 = gone)
--   risk_band: high >= 0.60, medium >= 0.35, low otherwise
with accounts as (
    select * from {{ ref('accounts') }}
),

scored as (
    select
        account_id,
        account_name,
        owner_email,
        plan,
        mrr,
        cast(round(
              0.5 * (1 - least(greatest(health_score, 0), 100) / 100.0)
            + 0.3 * least(days_since_login, 60) / 60.0
            + 0.2 * least(open_tickets, 10) / 10.0
        , 3) as decimal(4, 3)) as churn_risk_score
    from accounts
)

select
    account_id,
    account_name,
    owner_email,
    plan,
    mrr,
    churn_risk_score,
    case
        when churn_risk_score >= 0.60 then 'high'
        when churn_risk_score >= 0.35 then 'medium'
        else 'low'
    end as risk_band
from scored
