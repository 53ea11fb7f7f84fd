-- title = "Lapsed customers"
-- description = """
-- One row per customer (normalized email) whose last order is more than `lapse_days` days
-- before the run, with at least `min_orders` orders, who may still be e-mailed: subscribed
-- and never complained in SmartrMail, and with e-mail marketing consent in Shopify. Their
-- Smile points, VIP tier and referral URL personalize the win-back e-mails."""
-- [params]
-- lapse_days = 90
-- min_orders = 1
WITH customer_orders AS (
  SELECT
    email_normalized,
    MAX(created_at) AS last_order_at,
    COUNT(*) AS order_count,
    SUM(total_price) AS lifetime_value
  FROM {{ ref('shopify_orders') }}
  WHERE email_normalized IS NOT NULL
    AND cancelled_at IS NULL
    AND NOT IFNULL(test, FALSE)
  GROUP BY email_normalized
),
-- Anyone unsubscribed or complained on the e-mail platform, or without consent in Shopify.
suppressed AS (
  SELECT email_normalized
  FROM {{ ref('smartrmail_subscribers') }}
  WHERE NOT subscribed
    OR IFNULL(complained, FALSE)
    OR unsubscribed_at IS NOT NULL
  UNION ALL
  SELECT email_normalized
  FROM {{ ref('shopify_customers') }}
  WHERE marketing_state IS NULL OR marketing_state != 'SUBSCRIBED'
),
consented AS (
  SELECT email_normalized
  FROM {{ ref('shopify_customers') }}
  WHERE marketing_state = 'SUBSCRIBED'
),
lapsed AS (
  SELECT o.*
  FROM customer_orders AS o
  WHERE o.last_order_at < TIMESTAMP_SUB({{ now }}, INTERVAL {{ params.lapse_days }} DAY)
    AND o.order_count >= {{ params.min_orders }}
    AND EXISTS (SELECT 1 FROM consented AS c WHERE c.email_normalized = o.email_normalized)
    AND NOT EXISTS (
      SELECT 1 FROM suppressed AS s WHERE s.email_normalized = o.email_normalized
    )
)
SELECT
  o.email_normalized AS email,
  o.last_order_at,
  o.order_count,
  o.lifetime_value,
  DATE_DIFF(DATE({{ now }}), DATE(o.last_order_at), DAY) AS days_since_last_order,
  l.points_balance,
  l.vip_tier_name,
  l.referral_url
FROM lapsed AS o
LEFT JOIN {{ ref('smile_customers') }} AS l ON l.email_normalized = o.email_normalized
WHERE TRUE
-- A customer with several Smile accounts: the one updated last.
QUALIFY ROW_NUMBER() OVER (
  PARTITION BY o.email_normalized ORDER BY l.updated_at DESC, l.id DESC
) = 1
ORDER BY o.last_order_at, email
