// Two log alert rules on Application Insights, and an optional e-mail action group.
//   1. A collection failed: the timer invocation 'collect' ended unsuccessfully (the collector raises after
//      attempting every day when any day failed; a timeout or a settings error fails it too).
//   2. No successful collection in 36 hours (a daily schedule plus a 12-hour margin). It stays quiet for 36
//      hours after each deployment, so a fresh install does not alert before its first scheduled run.
param namePrefix string
param location string
param tags object = {}
param applicationInsightsId string
param alertEmail string = ''
@description('Deployment time; the no-success alert is quiet for 36 hours after it.')
param deployedAt string = utcNow('u')

var sendEmail = !empty(alertEmail)

resource actionGroup 'Microsoft.Insights/actionGroups@2023-01-01' = if (sendEmail) {
  name: 'ag-${namePrefix}'
  location: 'Global'
  tags: tags
  properties: {
    groupShortName: 'callsalert'
    enabled: true
    emailReceivers: [
      {
        name: 'email'
        emailAddress: alertEmail
        useCommonAlertSchema: true
      }
    ]
  }
}

var actions = sendEmail ? {
  actionGroups: [
    actionGroup.id
  ]
} : {
  actionGroups: []
}

resource collectionFailed 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-collection-failed'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call collector: a collection run failed'
    description: 'The timer function collect failed. Its exception names the feed and days; they are retried on the next run. See /api/status and the traces of the failed invocation.'
    severity: 2
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'PT2H'
    criteria: {
      allOf: [
        {
          query: 'requests | where name == "collect" and success == false | summarize Failures = count()'
          timeAggregation: 'Total'
          metricMeasureColumn: 'Failures'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

resource noRecentSuccess 'Microsoft.Insights/scheduledQueryRules@2022-06-15' = {
  name: '${namePrefix}-no-success-36h'
  location: location
  tags: tags
  properties: {
    displayName: 'Teams call collector: no successful run in 36 hours'
    description: 'No invocation of the timer function collect succeeded in the last 36 hours: the app is stopped, the schedule is wrong, or every run fails (often: the Graph permission is missing).'
    severity: 1
    enabled: true
    scopes: [
      applicationInsightsId
    ]
    evaluationFrequency: 'PT1H'
    windowSize: 'P2D'
    criteria: {
      allOf: [
        {
          query: 'requests | where timestamp > ago(36h) and name == "collect" and success == true | summarize Successes = count() | extend Stale = iff(Successes == 0 and now() > datetime(${deployedAt}) + 36h, 1, 0)'
          timeAggregation: 'Total'
          metricMeasureColumn: 'Stale'
          operator: 'GreaterThan'
          threshold: 0
          failingPeriods: {
            numberOfEvaluationPeriods: 1
            minFailingPeriodsToAlert: 1
          }
        }
      ]
    }
    autoMitigate: true
    actions: actions
  }
}

output collectionFailedAlertId string = collectionFailed.id
output noRecentSuccessAlertId string = noRecentSuccess.id
