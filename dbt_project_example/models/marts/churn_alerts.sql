-- One alert per account whose churn risk crosses the alerting threshold,
-- posted to the customer-success channel.
select
    'churn-' || account_id as alert_id,
    account_id,
    account_name,
    owner_email,
    churn_risk_score,
    account_name || ' (' || plan || ', $' || cast(mrr as varchar) || '/mo) has a churn risk of '
        || cast(churn_risk_score as varchar) || '. Owner: ' || owner_email || '.' as message
from {{ ref('churn_risk') }}
where churn_risk_score >= {{ var('churn_alert_threshold', 0.75) }}
