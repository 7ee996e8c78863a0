// Teams phone-call log collector: everything one tenant needs in its own subscription, with no key or secret.
//   azd up    provisions this template, then deploys the app (azure.yaml at the repo root)
// A resource group holds: a user-assigned managed identity; a Function App on Flex Consumption (Python 3.11);
// a Storage account (host storage, deployment package, raw archive with lifecycle tiering); a serverless
// Cosmos DB NoSQL account with key auth disabled; Log Analytics + Application Insights; two alert rules.
// The identity reaches every store through role assignments; the app settings carry endpoints, never keys.
// Granting the Microsoft Graph app role is a directory operation: infra/hooks/postprovision.* does it after
// provisioning when the deployer may (README.md, "Deploy to Azure", has the one-command fallback).
targetScope = 'subscription'

// ---- Environment -------------------------------------------------------------------------------------------

@minLength(1)
@maxLength(64)
@description('Name of the azd environment. Every resource name derives from it.')
param environmentName string

@minLength(1)
@description('Region of every resource. It must offer Flex Consumption: az functionapp list-flexconsumption-locations')
@metadata({
  azd: {
    type: 'location'
  }
})
param location string

@description('Resource group name. Empty: rg-<environmentName>.')
param resourceGroupName string = ''

// ---- Collector settings (app settings; shared/config/settings.py validates them at start-up) -----------------------

@description('NCRONTAB schedule of the daily rhythm, six fields, UTC (COLLECT_SCHEDULE): new days and the re-scan are due at each occurrence. Default: daily at 03:30.')
param collectSchedule string = '0 30 3 * * *'

@description('NCRONTAB schedule of the collect timer, six fields, UTC (COLLECT_TIMER_SCHEDULE): each tick collects what is due, so a backlog goes on run after run. Default: every minute.')
param collectTimerSchedule string = '0 * * * * *'

@description('Feeds to collect, comma separated: pstn, directRouting (FEEDS).')
param feeds string = 'pstn,directRouting'

@description('IANA time zone whose calendar day is a day, e.g. Europe/Berlin (TIME_ZONE).')
param timeZone string = 'UTC'

@description('First day (YYYY-MM-DD) that must be collected (COVERAGE_START). Empty: 30 days before the first run. Graph keeps about 12 months.')
param coverageStart string = ''

@minValue(0)
@maxValue(90)
@description('Recent days collected again on every run, for rows Graph publishes late (RESCAN_DAYS).')
param rescanDays int = 3

@minValue(60)
@maxValue(1740)
@description('Seconds one timer run may spend before leaving the rest to the next run (TIME_BUDGET_SECONDS). Stays under host.json functionTimeout (30 min).')
param timeBudgetSeconds int = 1500

@minValue(1)
@maxValue(24)
@description('Concurrent sub-windows a day is fetched in (SUBWINDOWS).')
param subwindows int = 1

@minValue(1)
@maxValue(64)
@description('Concurrent Cosmos DB batch writes (UPSERT_CONCURRENCY).')
param upsertConcurrency int = 8

@description('Microsoft Graph base URL (GRAPH_ENDPOINT); national clouds: https://graph.microsoft.us, https://dod-graph.microsoft.us.')
param graphEndpoint string = 'https://graph.microsoft.com'

@allowed([
  'v1.0'
  'beta'
])
@description('Microsoft Graph API version (GRAPH_API_VERSION); beta rows carry more fields.')
param graphApiVersion string = 'v1.0'

@description('Requests per minute to each Graph call-log function (GRAPH_FUNCTION_REQUESTS_PER_MINUTE), a decimal number. Microsoft documents 50 per 60 s per function.')
param graphFunctionRequestsPerMinute string = '47'

@description('Graph call-log requests per minute of the app identity (GRAPH_APP_REQUESTS_PER_MINUTE), a decimal number. Microsoft documents 200 per 60 s per application per tenant.')
param graphAppRequestsPerMinute string = '190'

@description('Graph call-log requests per minute to the tenant (GRAPH_TENANT_REQUESTS_PER_MINUTE), a decimal number. Microsoft documents 1,000 per 60 s per tenant for all apps.')
param graphTenantRequestsPerMinute string = '950'

@minValue(1)
@maxValue(600)
@description('Timeout of each Graph request in seconds (GRAPH_TIMEOUT_SECONDS).')
param graphTimeoutSeconds int = 60

@minValue(0)
@maxValue(50)
@description('Retries of one Graph request on 429, 503, 504 and dropped connections (GRAPH_MAX_RETRIES).')
param graphMaxRetries int = 8

@allowed([
  'CallRecords.Read.All'
  'CallRecord-PstnCalls.Read.All'
])
@description('Microsoft Graph application permission the postprovision hook grants to the identity. Either reads PSTN and Direct Routing call logs.')
param graphAppRole string = 'CallRecords.Read.All'

// ---- Storage, retention, hosting, alerts ------------------------------------------------------------------

@allowed([
  'Standard_LRS'
  'Standard_ZRS'
  'Standard_GRS'
  'Standard_GZRS'
])
@description('Redundancy of the storage account that holds the raw archive.')
param storageSkuName string = 'Standard_LRS'

@minValue(1)
@maxValue(3650)
@description('Days after which raw archive pages move from the Hot to the Cool tier.')
param archiveCoolAfterDays int = 30

@minValue(0)
@maxValue(3650)
@description('Days after which raw archive pages move to the Cold tier; 0 keeps them in Cool. Must exceed archiveCoolAfterDays.')
param archiveColdAfterDays int = 180

@minValue(0)
@maxValue(36500)
@description('Days after which raw archive pages are deleted; 0 keeps them for ever.')
param archiveDeleteAfterDays int = 0

@minValue(0)
@maxValue(3650)
@description('Days after its last write that a call row or daily summary expires from Cosmos DB (TTL); 0 keeps rows for ever. The run ledger never expires.')
param cosmosTtlDays int = 0

@allowed([
  2048
  4096
])
@description('Instance memory of the Flex Consumption app in MB.')
param instanceMemoryMB int = 2048

@minValue(1)
@maxValue(1000)
@description('Most instances the Flex Consumption app scales out to.')
param maximumInstanceCount int = 40

@minValue(30)
@maxValue(730)
@description('Days Log Analytics keeps logs and Application Insights telemetry.')
param logRetentionDays int = 30

@description('E-mail address that receives the alerts. Empty: the alert rules fire in the portal only.')
param alertEmail string = ''

// ---- Names -------------------------------------------------------------------------------------------------

var resourceToken = toLower(uniqueString(subscription().id, environmentName, location))
var tags = {
  'azd-env-name': environmentName
}
var functionAppName = 'func-${resourceToken}'
var deploymentContainerName = 'app-package'

// Cosmos DB database and containers. Names are the defaults of shared/config/settings.py; partition keys are those of
// shared/stores/schema.py (tests/test_infra.py checks both). Each container indexes only the paths its queries use.
var cosmosDatabaseName = 'teamscalls'
var pstnContainerName = 'pstnCalls'
var directRoutingContainerName = 'directRoutingCalls'
var runsContainerName = 'runs'
var summariesContainerName = 'dailyUsage'
var archiveContainerName = 'callrecords-raw'

var ttlSeconds = cosmosTtlDays * 86400
var callIndexedPaths = [
  '/day/?'
  '/startUtc/?'
  '/id/?'
  '/userPrincipalName/?'
  '/userId/?'
  '/callType/?'
]
var callCompositeIndexes = [
  [
    {
      path: '/startUtc'
      order: 'ascending'
    }
    {
      path: '/id'
      order: 'ascending'
    }
  ]
  [
    {
      path: '/startUtc'
      order: 'descending'
    }
    {
      path: '/id'
      order: 'descending'
    }
  ]
]
var cosmosContainers = [
  {
    name: pstnContainerName
    partitionKey: '/day'
    indexedPaths: callIndexedPaths
    compositeIndexes: callCompositeIndexes
    ttlSeconds: ttlSeconds
  }
  {
    name: directRoutingContainerName
    partitionKey: '/day'
    indexedPaths: callIndexedPaths
    compositeIndexes: callCompositeIndexes
    ttlSeconds: ttlSeconds
  }
  {
    name: runsContainerName
    partitionKey: '/pk'
    indexedPaths: [
      '/pk/?'
      '/kind/?'
      '/day/?'
      '/started/?'
    ]
    compositeIndexes: []
    ttlSeconds: 0
  }
  {
    name: summariesContainerName
    partitionKey: '/day'
    indexedPaths: [
      '/day/?'
      '/id/?'
      '/feed/?'
      '/userId/?'
      '/userPrincipalName/?'
      '/callType/?'
    ]
    compositeIndexes: []
    ttlSeconds: ttlSeconds
  }
]

// Microsoft Graph app roles (application permissions) that read the PSTN and Direct Routing call logs.
var graphAppRoleIds = {
  'CallRecords.Read.All': '45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8'
  'CallRecord-PstnCalls.Read.All': 'a2611786-80b3-417e-adaa-707d4261a5f0'
}

// Every setting the app reads (shared/config/settings.py specs()) except the secret and local-only ones, which stay unset
// in Azure. The host's own settings (AzureWebJobsStorage__*, APPLICATIONINSIGHTS_*) are added by the module.
var appSettings = {
  GRAPH_ENDPOINT: graphEndpoint
  GRAPH_API_VERSION: graphApiVersion
  GRAPH_CREDENTIAL: 'managed_identity'
  GRAPH_CLIENT_ID: identity.outputs.clientId
  GRAPH_FUNCTION_REQUESTS_PER_MINUTE: graphFunctionRequestsPerMinute
  GRAPH_APP_REQUESTS_PER_MINUTE: graphAppRequestsPerMinute
  GRAPH_TENANT_REQUESTS_PER_MINUTE: graphTenantRequestsPerMinute
  GRAPH_TIMEOUT_SECONDS: string(graphTimeoutSeconds)
  GRAPH_MAX_RETRIES: string(graphMaxRetries)
  AZURE_CLIENT_ID: identity.outputs.clientId
  COSMOS_ENDPOINT: cosmos.outputs.endpoint
  COSMOS_DATABASE: cosmosDatabaseName
  COSMOS_PSTN_CONTAINER: pstnContainerName
  COSMOS_DIRECT_ROUTING_CONTAINER: directRoutingContainerName
  COSMOS_RUNS_CONTAINER: runsContainerName
  COSMOS_SUMMARIES_CONTAINER: summariesContainerName
  STORAGE_ACCOUNT_URL: storage.outputs.blobEndpoint
  ARCHIVE_CONTAINER: archiveContainerName
  FEEDS: feeds
  TIME_ZONE: timeZone
  COVERAGE_START: coverageStart
  RESCAN_DAYS: string(rescanDays)
  TIME_BUDGET_SECONDS: string(timeBudgetSeconds)
  SUBWINDOWS: string(subwindows)
  UPSERT_CONCURRENCY: string(upsertConcurrency)
  COLLECT_SCHEDULE: collectSchedule
  COLLECT_TIMER_SCHEDULE: collectTimerSchedule
}

// ---- Resources ---------------------------------------------------------------------------------------------

resource rg 'Microsoft.Resources/resourceGroups@2024-03-01' = {
  name: empty(resourceGroupName) ? 'rg-${environmentName}' : resourceGroupName
  location: location
  tags: tags
}

module identity 'modules/identity.bicep' = {
  name: 'identity'
  scope: rg
  params: {
    name: 'id-${resourceToken}'
    location: location
    tags: tags
  }
}

module monitoring 'modules/monitoring.bicep' = {
  name: 'monitoring'
  scope: rg
  params: {
    logAnalyticsName: 'log-${resourceToken}'
    applicationInsightsName: 'appi-${resourceToken}'
    location: location
    tags: tags
    retentionInDays: logRetentionDays
  }
}

module storage 'modules/storage.bicep' = {
  name: 'storage'
  scope: rg
  params: {
    name: 'st${resourceToken}'
    location: location
    tags: tags
    skuName: storageSkuName
    deploymentContainerName: deploymentContainerName
    archiveContainerName: archiveContainerName
    archiveCoolAfterDays: archiveCoolAfterDays
    archiveColdAfterDays: archiveColdAfterDays
    archiveDeleteAfterDays: archiveDeleteAfterDays
  }
}

module cosmos 'modules/cosmos.bicep' = {
  name: 'cosmos'
  scope: rg
  params: {
    accountName: 'cosmos-${resourceToken}'
    location: location
    tags: tags
    databaseName: cosmosDatabaseName
    containers: cosmosContainers
    dataContributorPrincipalId: identity.outputs.principalId
  }
}

module rbac 'modules/rbac.bicep' = {
  name: 'rbac'
  scope: rg
  params: {
    principalId: identity.outputs.principalId
    storageAccountName: storage.outputs.name
    applicationInsightsName: monitoring.outputs.applicationInsightsName
  }
}

module functionApp 'modules/function-app.bicep' = {
  name: 'function-app'
  scope: rg
  params: {
    name: functionAppName
    planName: 'plan-${resourceToken}'
    location: location
    tags: tags
    identityId: identity.outputs.id
    identityClientId: identity.outputs.clientId
    storageAccountName: storage.outputs.name
    deploymentContainerName: deploymentContainerName
    applicationInsightsConnectionString: monitoring.outputs.connectionString
    instanceMemoryMB: instanceMemoryMB
    maximumInstanceCount: maximumInstanceCount
    appSettings: appSettings
  }
  // The host reaches its storage with the identity from the first start: roles first.
  dependsOn: [
    rbac
  ]
}

module alerts 'modules/alerts.bicep' = {
  name: 'alerts'
  scope: rg
  params: {
    namePrefix: functionAppName
    location: location
    tags: tags
    applicationInsightsId: monitoring.outputs.applicationInsightsId
    alertEmail: alertEmail
  }
}

// ---- Outputs (azd stores them in .azure/<env>/.env; the postprovision hook reads them) ---------------------

output AZURE_LOCATION string = location
output AZURE_TENANT_ID string = tenant().tenantId
output AZURE_RESOURCE_GROUP string = rg.name
output AZURE_FUNCTION_APP_NAME string = functionApp.outputs.name
output AZURE_FUNCTION_URL string = functionApp.outputs.url
output AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID string = identity.outputs.principalId
output AZURE_FUNCTION_IDENTITY_CLIENT_ID string = identity.outputs.clientId
output AZURE_COSMOS_ENDPOINT string = cosmos.outputs.endpoint
output AZURE_STORAGE_BLOB_ENDPOINT string = storage.outputs.blobEndpoint
output AZURE_GRAPH_ENDPOINT string = graphEndpoint
output GRAPH_APP_ROLE string = graphAppRole
output GRAPH_APP_ROLE_ID string = graphAppRoleIds[graphAppRole]
