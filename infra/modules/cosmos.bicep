// Cosmos DB for NoSQL, serverless, Entra ID only (key auth off). Creates the database and every container the
// app uses: data-plane RBAC cannot create them, so the app does not try. Each container indexes only the
// listed paths (everything else is excluded), which keeps a ~1.2 KB row write near 5-7 RU.
param accountName string
param location string
param tags object = {}
param databaseName string
@description('Containers: { name, partitionKey, indexedPaths: [path], compositeIndexes: [[{ path, order }]], ttlSeconds (0 = off) }')
param containers array
@description('Principal (object) id given Cosmos DB Built-in Data Contributor on the database.')
param dataContributorPrincipalId string

resource account 'Microsoft.DocumentDB/databaseAccounts@2024-05-15' = {
  name: accountName
  location: location
  tags: tags
  kind: 'GlobalDocumentDB'
  properties: {
    databaseAccountOfferType: 'Standard'
    locations: [
      {
        locationName: location
        failoverPriority: 0
        isZoneRedundant: false
      }
    ]
    consistencyPolicy: {
      defaultConsistencyLevel: 'Session'
    }
    capabilities: [
      {
        name: 'EnableServerless'
      }
    ]
    disableLocalAuth: true
    disableKeyBasedMetadataWriteAccess: true
    minimalTlsVersion: 'Tls12'
    publicNetworkAccess: 'Enabled'
    enableAutomaticFailover: false
    enableFreeTier: false
  }
}

resource database 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases@2024-05-15' = {
  parent: account
  name: databaseName
  properties: {
    resource: {
      id: databaseName
    }
  }
}

resource sqlContainers 'Microsoft.DocumentDB/databaseAccounts/sqlDatabases/containers@2024-05-15' = [for c in containers: {
  parent: database
  name: c.name
  properties: {
    resource: union({
      id: c.name
      partitionKey: {
        paths: [
          c.partitionKey
        ]
        kind: 'Hash'
        version: 2
      }
      indexingPolicy: {
        indexingMode: 'consistent'
        automatic: true
        includedPaths: [for p in c.indexedPaths: {
          path: p
        }]
        excludedPaths: [
          {
            path: '/*'
          }
          {
            path: '/"_etag"/?'
          }
        ]
        compositeIndexes: c.compositeIndexes
      }
    }, (c.ttlSeconds > 0) ? {
      defaultTtl: c.ttlSeconds
    } : {})
  }
}]

// Cosmos DB Built-in Data Contributor, scoped to the database (not the whole account).
var dataContributorRoleId = '00000000-0000-0000-0000-000000000002'

resource dataContributor 'Microsoft.DocumentDB/databaseAccounts/sqlRoleAssignments@2024-05-15' = {
  parent: account
  name: guid(account.id, dataContributorPrincipalId, dataContributorRoleId)
  properties: {
    principalId: dataContributorPrincipalId
    roleDefinitionId: '${account.id}/sqlRoleDefinitions/${dataContributorRoleId}'
    scope: '${account.id}/dbs/${databaseName}'
  }
  dependsOn: [
    database
  ]
}

output name string = account.name
output endpoint string = account.properties.documentEndpoint
