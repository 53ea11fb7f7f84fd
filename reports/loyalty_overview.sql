-- title = "Loyalty overview"
-- description = """
-- Smile members by state and VIP tier: how many, the points they hold, the points issued
-- and redeemed in the `period_days` days before the run, and how many have a referral URL
-- to share. A last row totals every state and tier."""
-- deliver = [{ to = "slack", channel = "#loyalty" }]
-- [params]
-- period_days = 30
WITH members AS (
  SELECT
    id,
    IFNULL(state, 'unknown') AS state,
    IFNULL(vip_tier_name, 'no tier') AS vip_tier,
    IFNULL(points_balance, 0) AS points_balance,
    referral_url IS NOT NULL AND TRIM(referral_url) != '' AS has_referral_url
  FROM {{ ref('smile_customers') }}
),
period_points AS (
  SELECT
    customer_id,
    SUM(IF(points_change > 0, points_change, 0)) AS issued,
    SUM(IF(points_change < 0, -points_change, 0)) AS redeemed
  FROM {{ ref('smile_points_transactions') }}
  WHERE created_at >= TIMESTAMP_SUB({{ now }}, INTERVAL {{ params.period_days }} DAY)
    AND created_at < {{ now }}
  GROUP BY customer_id
),
per_member AS (
  SELECT m.*, IFNULL(p.issued, 0) AS issued, IFNULL(p.redeemed, 0) AS redeemed
  FROM members AS m
  LEFT JOIN period_points AS p ON p.customer_id = m.id
),
grouped AS (
  SELECT state, vip_tier, 0 AS is_total, * EXCEPT (state, vip_tier) FROM per_member
  UNION ALL
  SELECT 'all' AS state, 'all' AS vip_tier, 1 AS is_total, * EXCEPT (state, vip_tier)
  FROM per_member
)
SELECT
  state,
  vip_tier,
  COUNT(*) AS members,
  SUM(points_balance) AS points_outstanding,
  SUM(issued) AS points_issued,
  SUM(redeemed) AS points_redeemed,
  COUNTIF(has_referral_url) AS with_referral_url,
  ROUND(SAFE_DIVIDE(COUNTIF(has_referral_url), COUNT(*)), 4) AS referral_url_coverage
FROM grouped
GROUP BY is_total, state, vip_tier
ORDER BY is_total, state, vip_tier
