-- title = "Weekly email performance"
-- description = """
-- Every campaign sent in the 7 days before the run, per platform, with its metrics and
-- rates; then a total per platform and for all platforms, with the change against the 7
-- days before that (rates in points, sends and revenue in percent)."""
-- deliver = [{ to = "slack", channel = "#marketing" }, { to = "sheets", sheet = "Weekly email" }]
-- key_figures = [
--   { column = "sent", change = "sent_change_pct", unit = "%" },
--   { column = "revenue", change = "revenue_change_pct", unit = "%" },
--   { column = "open_rate", change = "open_rate_change", unit = "pts" },
--   { column = "click_through_rate", change = "click_through_rate_change", unit = "pts" },
-- ]
-- summary_row = { platform = "all platforms", row_type = "total" }
-- chart = { title = "Revenue by platform, last 7 days", x = "platform", y = ["revenue"], rows = { row_type = "total" } }
WITH recent AS (
  SELECT
    platform,
    campaign_id,
    name,
    sent_at,
    sent,
    delivered,
    unique_opens,
    unique_clicks,
    unsubscribes,
    complaints,
    revenue,
    IF(sent_at >= TIMESTAMP_SUB({{ now }}, INTERVAL 7 DAY), 'current', 'previous') AS period
  FROM {{ ref('email_campaign_metrics') }}
  WHERE sent_at >= TIMESTAMP_SUB({{ now }}, INTERVAL 14 DAY)
    AND sent_at < {{ now }}
),
-- Each campaign counts for its platform and for all platforms.
scoped AS (
  SELECT platform AS scope, * FROM recent
  UNION ALL
  SELECT 'all platforms' AS scope, * FROM recent
),
totals AS (
  SELECT
    scope,
    period,
    COUNT(*) AS campaigns,
    SUM(sent) AS sent,
    SUM(delivered) AS delivered,
    SUM(unique_opens) AS unique_opens,
    SUM(unique_clicks) AS unique_clicks,
    SUM(unsubscribes) AS unsubscribes,
    SUM(complaints) AS complaints,
    SUM(revenue) AS revenue
  FROM scoped
  GROUP BY scope, period
)
SELECT
  platform,
  'campaign' AS row_type,
  campaign_id,
  name AS campaign_name,
  sent_at,
  1 AS campaigns,
  sent,
  delivered,
  unique_opens,
  unique_clicks,
  unsubscribes,
  complaints,
  revenue,
  ROUND(SAFE_DIVIDE(unique_opens, delivered), 4) AS open_rate,
  ROUND(SAFE_DIVIDE(unique_clicks, delivered), 4) AS click_through_rate,
  ROUND(SAFE_DIVIDE(unsubscribes, delivered), 4) AS unsubscribe_rate,
  NULL AS open_rate_change,
  NULL AS click_through_rate_change,
  NULL AS sent_change_pct,
  NULL AS revenue_change_pct
FROM recent
WHERE period = 'current'
UNION ALL
SELECT
  cur.scope AS platform,
  'total' AS row_type,
  NULL AS campaign_id,
  NULL AS campaign_name,
  NULL AS sent_at,
  cur.campaigns,
  cur.sent,
  cur.delivered,
  cur.unique_opens,
  cur.unique_clicks,
  cur.unsubscribes,
  cur.complaints,
  cur.revenue,
  ROUND(SAFE_DIVIDE(cur.unique_opens, cur.delivered), 4) AS open_rate,
  ROUND(SAFE_DIVIDE(cur.unique_clicks, cur.delivered), 4) AS click_through_rate,
  ROUND(SAFE_DIVIDE(cur.unsubscribes, cur.delivered), 4) AS unsubscribe_rate,
  ROUND(
    SAFE_DIVIDE(cur.unique_opens, cur.delivered) - SAFE_DIVIDE(prev.unique_opens, prev.delivered),
    4
  ) AS open_rate_change,
  ROUND(
    SAFE_DIVIDE(cur.unique_clicks, cur.delivered)
      - SAFE_DIVIDE(prev.unique_clicks, prev.delivered),
    4
  ) AS click_through_rate_change,
  ROUND(100 * SAFE_DIVIDE(cur.sent - prev.sent, prev.sent), 1) AS sent_change_pct,
  ROUND(
    100 * SAFE_DIVIDE(CAST(cur.revenue - prev.revenue AS FLOAT64), CAST(prev.revenue AS FLOAT64)),
    1
  ) AS revenue_change_pct
FROM totals AS cur
LEFT JOIN totals AS prev
  ON prev.scope = cur.scope AND prev.period = 'previous'
WHERE cur.period = 'current'
ORDER BY platform, row_type, sent_at, campaign_id
