-- title = "Win-back results"
-- description = """
-- Per enrollment cohort (the ISO week customers were enrolled, and the sequence), how many
-- enrolled customers ordered again within 30 and 60 days of enrollment and the revenue
-- those orders brought. Reads `winback_enrollments`, the enrollment ledger's table
-- (email_normalized, platform, sequence, enrolled_at). A cohort younger than 60 days is
-- still filling up: `complete` says whether its whole 60-day window has passed."""
-- deliver = [{ to = "slack", channel = "#marketing" }]
-- [params]
-- cohort_days = 180
WITH enrollments AS (
  SELECT email_normalized, sequence, MIN(enrolled_at) AS enrolled_at
  FROM {{ ref('winback_enrollments') }}
  WHERE enrolled_at >= TIMESTAMP_SUB({{ now }}, INTERVAL {{ params.cohort_days }} DAY)
    AND enrolled_at < {{ now }}
  GROUP BY email_normalized, sequence
),
later_orders AS (
  SELECT
    e.email_normalized,
    e.sequence,
    e.enrolled_at,
    o.created_at,
    o.total_price
  FROM enrollments AS e
  JOIN {{ ref('shopify_orders') }} AS o
    ON o.email_normalized = e.email_normalized
    AND o.created_at > e.enrolled_at
    AND o.created_at <= TIMESTAMP_ADD(e.enrolled_at, INTERVAL 60 DAY)
    AND o.cancelled_at IS NULL
    AND NOT IFNULL(o.test, FALSE)
),
outcomes AS (
  SELECT
    e.email_normalized,
    e.sequence,
    DATE_TRUNC(DATE(e.enrolled_at), ISOWEEK) AS cohort_week,
    COUNTIF(l.created_at <= TIMESTAMP_ADD(e.enrolled_at, INTERVAL 30 DAY)) > 0 AS ordered_30,
    COUNT(l.created_at) > 0 AS ordered_60,
    SUM(IF(l.created_at <= TIMESTAMP_ADD(e.enrolled_at, INTERVAL 30 DAY), l.total_price, NULL))
      AS revenue_30,
    SUM(l.total_price) AS revenue_60
  FROM enrollments AS e
  LEFT JOIN later_orders AS l
    ON l.email_normalized = e.email_normalized AND l.sequence = e.sequence
  GROUP BY e.email_normalized, e.sequence, cohort_week
)
SELECT
  cohort_week,
  sequence,
  COUNT(*) AS enrolled,
  COUNTIF(ordered_30) AS ordered_within_30_days,
  COUNTIF(ordered_60) AS ordered_within_60_days,
  ROUND(SAFE_DIVIDE(COUNTIF(ordered_30), COUNT(*)), 4) AS reorder_rate_30_days,
  ROUND(SAFE_DIVIDE(COUNTIF(ordered_60), COUNT(*)), 4) AS reorder_rate_60_days,
  IFNULL(SUM(revenue_30), 0) AS revenue_30_days,
  IFNULL(SUM(revenue_60), 0) AS revenue_60_days,
  DATE_DIFF(DATE({{ now }}), cohort_week, DAY) >= 66 AS complete
FROM outcomes
GROUP BY cohort_week, sequence
ORDER BY cohort_week, sequence
