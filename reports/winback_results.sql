-- title = "Win-back results"
-- description = """
-- Does win-back earn money? Per platform, sequence and cohort (the ISO week people were
-- assigned), intent-to-treat: everyone assigned to treatment counts as treated whether or
-- not the send happened, everyone held out as control. The outcome is each person's orders
-- in the `window_days` after assignment, with order values capped at the sequence's 99th
-- percentile so one huge order cannot make a cohort. Per arm: people, buyers, conversion
-- and revenue per recipient; then the lift — absolute conversion lift with its 95%
-- interval, revenue-per-recipient lift with a Welch 95% interval, relative lift, and the
-- incremental revenue with its interval — and a plain verdict. Everything comes from
-- counts, sums and sums of squares per arm, so it runs the same here and on BigQuery.
-- `complete` says whether the cohort's whole window has passed."""
-- deliver = [{ to = "slack", channel = "#marketing" }]
-- [params]
-- window_days = 30
-- cohort_days = 180
WITH assigned AS (
  SELECT
    email_normalized,
    platform,
    sequence,
    arm,
    MIN(assigned_at) AS assigned_at
  FROM {{ ref('winback_enrollments') }}
  WHERE arm IN ('treatment', 'holdout')
    AND assigned_at >= TIMESTAMP_SUB({{ now }}, INTERVAL {{ params.cohort_days }} DAY)
    AND assigned_at < {{ now }}
  GROUP BY email_normalized, platform, sequence, arm
),
windowed AS (
  SELECT
    a.email_normalized,
    a.platform,
    a.sequence,
    o.total_price
  FROM assigned AS a
  JOIN {{ ref('shopify_orders') }} AS o
    ON o.email_normalized = a.email_normalized
    AND o.created_at >= a.assigned_at
    AND o.created_at < TIMESTAMP_ADD(a.assigned_at, INTERVAL {{ params.window_days }} DAY)
    AND o.created_at < {{ now }}
    AND o.cancelled_at IS NULL
    AND NOT IFNULL(o.test, FALSE)
),
-- The 99th percentile of order values per sequence: the largest value whose percent rank
-- is at most 0.99.
ranked AS (
  SELECT
    platform,
    sequence,
    total_price,
    PERCENT_RANK() OVER (PARTITION BY platform, sequence ORDER BY total_price) AS price_rank
  FROM windowed
),
caps AS (
  SELECT platform, sequence, MAX(IF(price_rank <= 0.99, total_price, NULL)) AS cap
  FROM ranked
  GROUP BY platform, sequence
),
people AS (
  SELECT
    a.platform,
    a.sequence,
    DATE_TRUNC(DATE(a.assigned_at), ISOWEEK) AS cohort_week,
    a.arm,
    a.email_normalized,
    MAX(a.assigned_at) AS assigned_at,
    COUNT(w.total_price) > 0 AS bought,
    CAST(IFNULL(SUM(LEAST(w.total_price, c.cap)), 0) AS FLOAT64) AS revenue
  FROM assigned AS a
  LEFT JOIN windowed AS w
    ON w.email_normalized = a.email_normalized
    AND w.platform = a.platform
    AND w.sequence = a.sequence
  LEFT JOIN caps AS c
    ON c.platform = a.platform AND c.sequence = a.sequence
  GROUP BY a.platform, a.sequence, cohort_week, a.arm, a.email_normalized
),
arms AS (
  SELECT
    platform,
    sequence,
    cohort_week,
    MAX(assigned_at) AS last_assigned_at,
    COUNTIF(arm = 'treatment') AS n_t,
    COUNTIF(arm = 'holdout') AS n_c,
    COUNTIF(arm = 'treatment' AND bought) AS buyers_t,
    COUNTIF(arm = 'holdout' AND bought) AS buyers_c,
    SUM(IF(arm = 'treatment', revenue, 0)) AS revenue_t,
    SUM(IF(arm = 'holdout', revenue, 0)) AS revenue_c,
    SUM(IF(arm = 'treatment', revenue * revenue, 0)) AS revenue_sq_t,
    SUM(IF(arm = 'holdout', revenue * revenue, 0)) AS revenue_sq_c
  FROM people
  GROUP BY platform, sequence, cohort_week
),
rates AS (
  SELECT
    *,
    SAFE_DIVIDE(buyers_t, n_t) AS p_t,
    SAFE_DIVIDE(buyers_c, n_c) AS p_c,
    SAFE_DIVIDE(revenue_t, n_t) AS rpr_t,
    SAFE_DIVIDE(revenue_c, n_c) AS rpr_c,
    -- Sample variances of revenue per person, from sums and sums of squares.
    SAFE_DIVIDE(revenue_sq_t - SAFE_DIVIDE(revenue_t * revenue_t, n_t), n_t - 1) AS var_t,
    SAFE_DIVIDE(revenue_sq_c - SAFE_DIVIDE(revenue_c * revenue_c, n_c), n_c - 1) AS var_c
  FROM arms
),
errors AS (
  SELECT
    *,
    p_t - p_c AS conversion_lift,
    SQRT(SAFE_DIVIDE(p_t * (1 - p_t), n_t) + SAFE_DIVIDE(p_c * (1 - p_c), n_c)) AS conversion_se,
    rpr_t - rpr_c AS rpr_lift,
    SQRT(SAFE_DIVIDE(var_t, n_t) + SAFE_DIVIDE(var_c, n_c)) AS rpr_se,
    -- Welch–Satterthwaite degrees of freedom.
    SAFE_DIVIDE(
      POW(SAFE_DIVIDE(var_t, n_t) + SAFE_DIVIDE(var_c, n_c), 2),
      SAFE_DIVIDE(POW(SAFE_DIVIDE(var_t, n_t), 2), n_t - 1)
        + SAFE_DIVIDE(POW(SAFE_DIVIDE(var_c, n_c), 2), n_c - 1)
    ) AS df
  FROM rates
),
intervals AS (
  SELECT
    *,
    conversion_lift - 1.959964 * conversion_se AS conversion_low,
    conversion_lift + 1.959964 * conversion_se AS conversion_high,
    -- Student's t 97.5% point for `df`, by its Cornish–Fisher expansion around 1.959964.
    1.959964
      + SAFE_DIVIDE(POW(1.959964, 3) + 1.959964, 4 * df)
      + SAFE_DIVIDE(5 * POW(1.959964, 5) + 16 * POW(1.959964, 3) + 3 * 1.959964, 96 * POW(df, 2))
      AS t_crit
  FROM errors
)
SELECT
  cohort_week,
  platform,
  sequence,
  n_t AS treated,
  n_c AS held_out,
  buyers_t AS treated_buyers,
  buyers_c AS held_out_buyers,
  ROUND(p_t, 4) AS treated_conversion,
  ROUND(p_c, 4) AS held_out_conversion,
  ROUND(rpr_t, 2) AS treated_revenue_per_recipient,
  ROUND(rpr_c, 2) AS held_out_revenue_per_recipient,
  ROUND(conversion_lift, 4) AS conversion_lift,
  ROUND(conversion_low, 4) AS conversion_lift_low,
  ROUND(conversion_high, 4) AS conversion_lift_high,
  ROUND(SAFE_DIVIDE(conversion_lift, p_c), 4) AS relative_lift,
  ROUND(rpr_lift, 2) AS revenue_per_recipient_lift,
  ROUND(rpr_lift - t_crit * rpr_se, 2) AS revenue_per_recipient_lift_low,
  ROUND(rpr_lift + t_crit * rpr_se, 2) AS revenue_per_recipient_lift_high,
  ROUND(rpr_lift * n_t, 2) AS incremental_revenue,
  ROUND((rpr_lift - t_crit * rpr_se) * n_t, 2) AS incremental_revenue_low,
  ROUND((rpr_lift + t_crit * rpr_se) * n_t, 2) AS incremental_revenue_high,
  TIMESTAMP_ADD(last_assigned_at, INTERVAL {{ params.window_days }} DAY) <= {{ now }} AS complete,
  CASE
    WHEN n_t = 0 OR n_c = 0 THEN 'no control group to compare with'
    WHEN conversion_se IS NULL OR conversion_se = 0 THEN 'not enough people to tell'
    WHEN conversion_low > 0 THEN CONCAT(
      'lift: +', CAST(ROUND(100 * conversion_lift, 1) AS STRING), ' pts (CI ',
      CAST(ROUND(100 * conversion_low, 1) AS STRING), ' … ',
      CAST(ROUND(100 * conversion_high, 1) AS STRING), ' pts)')
    WHEN conversion_high < 0 THEN CONCAT(
      'fewer buyers than the control group: ', CAST(ROUND(100 * conversion_lift, 1) AS STRING),
      ' pts (CI ', CAST(ROUND(100 * conversion_low, 1) AS STRING), ' … ',
      CAST(ROUND(100 * conversion_high, 1) AS STRING), ' pts)')
    ELSE CONCAT(
      'no detectable lift (CI ', CAST(ROUND(100 * conversion_low, 1) AS STRING), ' … ',
      CAST(ROUND(100 * conversion_high, 1) AS STRING), ' pts)')
  END AS verdict
FROM intervals
ORDER BY cohort_week, platform, sequence
