-- Marketing segment: high-paying accounts at high risk of churning.
-- Synced in mirror mode: an account that leaves this segment leaves the list.
select
    account_id,
    owner_email,
    account_name,
    mrr,
    churn_risk_score
from {{ ref('churn_risk') }}
where risk_band = 'high'
  and mrr >= {{ var('high_value_mrr_threshold', 1000) }}
