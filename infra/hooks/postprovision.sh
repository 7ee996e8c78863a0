#!/bin/sh
# azd postprovision hook: grant the Function App's managed identity the Microsoft Graph application permission
# that reads Teams call logs (GRAPH_APP_ROLE: CallRecords.Read.All by default, or CallRecord-PstnCalls.Read.All).
#
# Granting a Microsoft Graph application permission needs Global Administrator or Privileged Role Administrator
# in the tenant (the az login session). Without that role, or without az, this hook prints the one command an
# administrator can run instead, and still exits 0: the deployment goes on, the app starts, and the collector
# reports a 403 naming the missing permission until the grant is in place.
#
# Inputs (azd passes the environment, including the outputs of infra/main.bicep):
#   AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID  the identity's service principal (object) id
#   GRAPH_APP_ROLE, GRAPH_APP_ROLE_ID     the permission and its app role id
#   AZURE_GRAPH_ENDPOINT                  https://graph.microsoft.com, or a national cloud's Graph
#   AZURE_TENANT_ID                       the tenant the resources are in
#   GRANT_GRAPH_APP_ROLE=false            skip the grant (azd env set GRANT_GRAPH_APP_ROLE false)
#   GRANT_RETRY_SECONDS                   pause between tries while a new identity replicates (default 15)
set -u

GRAPH_APP_ID="00000003-0000-0000-c000-000000000000"
principal="${AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID:-}"
role_name="${GRAPH_APP_ROLE:-CallRecords.Read.All}"
role_id="${GRAPH_APP_ROLE_ID:-45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8}"
graph="${AZURE_GRAPH_ENDPOINT:-https://graph.microsoft.com}"
graph="${graph%/}"
tenant="${AZURE_TENANT_ID:-}"
pause="${GRANT_RETRY_SECONDS:-15}"

say() { printf '%s\n' "$*"; }

fallback() {
  say ""
  say "Microsoft Graph permission NOT granted: $1"
  say "Ask a Global Administrator or Privileged Role Administrator of the tenant to run this one command"
  say "(Azure CloudShell or any shell with az signed in to tenant ${tenant:-<tenant id>}):"
  say ""
  say "  az rest --method POST --url \"$graph/v1.0/servicePrincipals/${principal:-<AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID>}/appRoleAssignments\" --body \"{\\\"principalId\\\":\\\"${principal:-<AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID>}\\\",\\\"resourceId\\\":\\\"\$(az ad sp show --id $GRAPH_APP_ID --query id -o tsv)\\\",\\\"appRoleId\\\":\\\"$role_id\\\"}\""
  say ""
  say "Then run this hook again with 'azd hooks run postprovision', or just wait: see README.md, "Grant the Microsoft Graph permission"."
  exit 0
}

if [ "${GRANT_GRAPH_APP_ROLE:-true}" = "false" ]; then
  say "GRANT_GRAPH_APP_ROLE=false: not granting $role_name."
  fallback "skipped on request"
fi
if [ -z "$principal" ]; then
  fallback "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID is not set (did 'azd provision' finish?)"
fi
if ! command -v az >/dev/null 2>&1; then
  fallback "the Azure CLI (az) is not installed"
fi
signed_in_tenant=$(az account show --query tenantId -o tsv 2>/dev/null) || fallback "az is not signed in (az login)"
if [ -n "$tenant" ] && [ "$signed_in_tenant" != "$tenant" ]; then
  fallback "az is signed in to tenant $signed_in_tenant, the resources are in $tenant (az login --tenant $tenant)"
fi

graph_sp=$(az rest --method GET --resource "$graph" \
  --url "$graph/v1.0/servicePrincipals(appId='$GRAPH_APP_ID')?\$select=id" --query id -o tsv 2>/dev/null)
[ -n "$graph_sp" ] || fallback "could not read the Microsoft Graph service principal"

say "Granting $role_name on Microsoft Graph to the app's identity $principal ..."
tries=0
while :; do
  tries=$((tries + 1))
  existing=$(az rest --method GET --resource "$graph" \
    --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
    --query "length(value[?appRoleId=='$role_id' && resourceId=='$graph_sp'])" -o tsv 2>/dev/null)
  if [ -n "$existing" ] && [ "$existing" != "0" ]; then
    say "$role_name is already granted."
    exit 0
  fi
  body="{\"principalId\":\"$principal\",\"resourceId\":\"$graph_sp\",\"appRoleId\":\"$role_id\"}"
  if error=$(az rest --method POST --resource "$graph" \
      --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" \
      --headers "Content-Type=application/json" --body "$body" -o none 2>&1); then
    say "Granted $role_name. Managed identity tokens are cached for up to 24 hours, so the collector may get"
    say "403 until its token renews; the next scheduled run after that collects every missed day."
    exit 0
  fi
  case "$error" in
    *Authorization_RequestDenied*|*Forbidden*|*403*|*"Insufficient privileges"*)
      fallback "the signed-in account may not grant application permissions" ;;
  esac
  # A brand-new identity takes a little while to appear in Microsoft Graph.
  [ "$tries" -ge 5 ] && fallback "$(printf '%s' "$error" | tail -n 1)"
  sleep "$pause"
done
