// One Storage account, reached only with Entra ID (shared keys off):
//   - the Functions host's own blobs (AzureWebJobsStorage__*: timer schedule, leases, keys),
//   - the deployment package container that Flex Consumption runs from,
//   - the raw archive container, whose blobs a lifecycle rule moves to cooler tiers as they age.
param name string
param location string
param tags object = {}
param skuName string = 'Standard_LRS'
param deploymentContainerName string
param archiveContainerName string
param archiveCoolAfterDays int
param archiveColdAfterDays int
param archiveDeleteAfterDays int

resource storage 'Microsoft.Storage/storageAccounts@2023-05-01' = {
  name: name
  location: location
  tags: tags
  kind: 'StorageV2'
  sku: {
    name: skuName
  }
  properties: {
    accessTier: 'Hot'
    allowBlobPublicAccess: false
    allowSharedKeyAccess: false
    allowCrossTenantReplication: false
    defaultToOAuthAuthentication: true
    minimumTlsVersion: 'TLS1_2'
    supportsHttpsTrafficOnly: true
    publicNetworkAccess: 'Enabled'
    networkAcls: {
      defaultAction: 'Allow'
      bypass: 'AzureServices'
    }
    encryption: {
      keySource: 'Microsoft.Storage'
      requireInfrastructureEncryption: true
      services: {
        blob: {
          enabled: true
          keyType: 'Account'
        }
        file: {
          enabled: true
          keyType: 'Account'
        }
      }
    }
  }
}

resource blobService 'Microsoft.Storage/storageAccounts/blobServices@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    deleteRetentionPolicy: {
      enabled: true
      days: 7
    }
    containerDeleteRetentionPolicy: {
      enabled: true
      days: 7
    }
  }
}

resource deploymentContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: deploymentContainerName
  properties: {
    publicAccess: 'None'
  }
}

resource archiveContainer 'Microsoft.Storage/storageAccounts/blobServices/containers@2023-05-01' = {
  parent: blobService
  name: archiveContainerName
  properties: {
    publicAccess: 'None'
  }
}

// Raw pages are written once and read only to replay or audit: Hot, then Cool, then Cold, then (optionally) gone.
var coolAction = {
  tierToCool: {
    daysAfterModificationGreaterThan: archiveCoolAfterDays
  }
}
var coldAction = (archiveColdAfterDays > archiveCoolAfterDays) ? {
  tierToCold: {
    daysAfterModificationGreaterThan: archiveColdAfterDays
  }
} : {}
var deleteAction = (archiveDeleteAfterDays > 0) ? {
  delete: {
    daysAfterModificationGreaterThan: archiveDeleteAfterDays
  }
} : {}

resource lifecycle 'Microsoft.Storage/storageAccounts/managementPolicies@2023-05-01' = {
  parent: storage
  name: 'default'
  properties: {
    policy: {
      rules: [
        {
          name: 'archive-tiering'
          enabled: true
          type: 'Lifecycle'
          definition: {
            filters: {
              blobTypes: [
                'blockBlob'
              ]
              prefixMatch: [
                '${archiveContainerName}/'
              ]
            }
            actions: {
              baseBlob: union(coolAction, coldAction, deleteAction)
            }
          }
        }
      ]
    }
  }
  dependsOn: [
    archiveContainer
  ]
}

output name string = storage.name
output id string = storage.id
output blobEndpoint string = storage.properties.primaryEndpoints.blob
