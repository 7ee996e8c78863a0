// The user-assigned managed identity of the Function App: Graph, Cosmos DB, Blob storage, the host's storage
// and Application Insights all see this one identity.
param name string
param location string
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output clientId string = identity.properties.clientId
output principalId string = identity.properties.principalId
