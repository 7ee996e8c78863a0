// The Function App on the Flex Consumption plan (Linux, Python 3.11), running as the user-assigned identity.
// Identity everywhere: the deployment package, the host's storage (AzureWebJobsStorage__*) and Application
// Insights (APPLICATIONINSIGHTS_AUTHENTICATION_STRING) are all reached with the identity, never a key.
// Flex Consumption takes the runtime from functionAppConfig: FUNCTIONS_WORKER_RUNTIME, FUNCTIONS_EXTENSION_VERSION,
// WEBSITE_RUN_FROM_PACKAGE and WEBSITE_CONTENT* must not be app settings (the platform rejects them).
param name string
param planName string
param location string
param tags object = {}
param identityId string
param identityClientId string
param storageAccountName string
param deploymentContainerName string
param applicationInsightsConnectionString string
param instanceMemoryMB int = 2048
param maximumInstanceCount int = 40
@description('The app\'s own settings (shared/config/settings.py); the host\'s are added here.')
param appSettings object

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' existing = {
  name: storageAccountName
}

// App settings: the app's own, plus the host's identity-based connections. Set in siteConfig (not a separate
// sites/config resource) so they are in place on the app's first start.
var settings = union(appSettings, {
  AzureWebJobsStorage__accountName: storage.name
  AzureWebJobsStorage__credential: 'managedidentity'
  AzureWebJobsStorage__clientId: identityClientId
  APPLICATIONINSIGHTS_CONNECTION_STRING: applicationInsightsConnectionString
  APPLICATIONINSIGHTS_AUTHENTICATION_STRING: 'ClientId=${identityClientId};Authorization=AAD'
})

resource plan 'Microsoft.Web/serverfarms@2024-04-01' = {
  name: planName
  location: location
  tags: tags
  kind: 'functionapp'
  sku: {
    tier: 'FlexConsumption'
    name: 'FC1'
  }
  properties: {
    reserved: true
  }
}

resource site 'Microsoft.Web/sites@2024-04-01' = {
  name: name
  location: location
  // azd finds the deployment target of service 'api' (azure.yaml) by this tag.
  tags: union(tags, {
    'azd-service-name': 'api'
  })
  kind: 'functionapp,linux'
  identity: {
    type: 'UserAssigned'
    userAssignedIdentities: {
      '${identityId}': {}
    }
  }
  properties: {
    serverFarmId: plan.id
    httpsOnly: true
    siteConfig: {
      minTlsVersion: '1.2'
      scmMinTlsVersion: '1.2'
      ftpsState: 'Disabled'
      http20Enabled: true
      appSettings: [for setting in items(settings): {
        name: setting.key
        value: setting.value
      }]
      cors: {
        // The portal's Test/Run calls the app from this origin.
        allowedOrigins: [
          'https://portal.azure.com'
        ]
      }
    }
    functionAppConfig: {
      deployment: {
        storage: {
          type: 'blobContainer'
          value: '${storage.properties.primaryEndpoints.blob}${deploymentContainerName}'
          authentication: {
            type: 'UserAssignedIdentity'
            userAssignedIdentityResourceId: identityId
          }
        }
      }
      scaleAndConcurrency: {
        instanceMemoryMB: instanceMemoryMB
        maximumInstanceCount: maximumInstanceCount
      }
      runtime: {
        name: 'python'
        version: '3.11'
      }
    }
  }
}

// No publishing passwords: azd deploys with an Entra ID token.
resource scmBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'scm'
  properties: {
    allow: false
  }
}

resource ftpBasicAuth 'Microsoft.Web/sites/basicPublishingCredentialsPolicies@2024-04-01' = {
  parent: site
  name: 'ftp'
  properties: {
    allow: false
  }
}

output name string = site.name
output url string = 'https://${site.properties.defaultHostName}'
