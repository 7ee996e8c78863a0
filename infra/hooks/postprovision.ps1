# azd postprovision hook (Windows): the same as postprovision.sh. Grants the Function App's managed identity
# the Microsoft Graph application permission that reads Teams call logs, or prints the one command an
# administrator (Global Administrator or Privileged Role Administrator) can run instead. Always exits 0.
$ErrorActionPreference = 'Continue'

$graphAppId = '00000003-0000-0000-c000-000000000000'
$principal = $env:AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID
$roleName = if ($env:GRAPH_APP_ROLE) { $env:GRAPH_APP_ROLE } else { 'CallRecords.Read.All' }
$roleId = if ($env:GRAPH_APP_ROLE_ID) { $env:GRAPH_APP_ROLE_ID } else { '45bbb07e-7321-4fd7-a8f6-3ff27e6a81c8' }
$graph = if ($env:AZURE_GRAPH_ENDPOINT) { $env:AZURE_GRAPH_ENDPOINT.TrimEnd('/') } else { 'https://graph.microsoft.com' }
$tenant = $env:AZURE_TENANT_ID
$pause = if ($env:GRANT_RETRY_SECONDS) { [int]$env:GRANT_RETRY_SECONDS } else { 15 }

function Show-Fallback([string]$why) {
    $p = if ($principal) { $principal } else { '<AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID>' }
    Write-Host ''
    Write-Host "Microsoft Graph permission NOT granted: $why"
    Write-Host 'Ask a Global Administrator or Privileged Role Administrator of the tenant to run this one command'
    Write-Host "(Azure CloudShell or any shell with az signed in to tenant $tenant):"
    Write-Host ''
    Write-Host "  az rest --method POST --url `"$graph/v1.0/servicePrincipals/$p/appRoleAssignments`" --body `"{\`"principalId\`":\`"$p\`",\`"resourceId\`":\`"`$(az ad sp show --id $graphAppId --query id -o tsv)\`",\`"appRoleId\`":\`"$roleId\`"}`""
    Write-Host ''
    Write-Host 'Or, in PowerShell with the Microsoft.Graph module:'
    Write-Host "  Connect-MgGraph -Scopes AppRoleAssignment.ReadWrite.All,Application.Read.All; New-MgServicePrincipalAppRoleAssignment -ServicePrincipalId $p -PrincipalId $p -AppRoleId $roleId -ResourceId (Get-MgServicePrincipal -Filter `"appId eq '$graphAppId'`").Id"
    Write-Host ''
    Write-Host "Then run this hook again with 'azd hooks run postprovision', or just wait: see README.md, "Grant the Microsoft Graph permission"."
    exit 0
}

if ($env:GRANT_GRAPH_APP_ROLE -eq 'false') { Show-Fallback 'skipped on request (GRANT_GRAPH_APP_ROLE=false)' }
if (-not $principal) { Show-Fallback "AZURE_FUNCTION_IDENTITY_PRINCIPAL_ID is not set (did 'azd provision' finish?)" }
if (-not (Get-Command az -ErrorAction SilentlyContinue)) { Show-Fallback 'the Azure CLI (az) is not installed' }
$signedIn = az account show --query tenantId -o tsv 2>$null
if ($LASTEXITCODE -ne 0 -or -not $signedIn) { Show-Fallback 'az is not signed in (az login)' }
if ($tenant -and $signedIn -ne $tenant) { Show-Fallback "az is signed in to tenant $signedIn, the resources are in $tenant (az login --tenant $tenant)" }

$graphSp = az rest --method GET --resource $graph --url "$graph/v1.0/servicePrincipals(appId='$graphAppId')?`$select=id" --query id -o tsv 2>$null
if (-not $graphSp) { Show-Fallback 'could not read the Microsoft Graph service principal' }

Write-Host "Granting $roleName on Microsoft Graph to the app's identity $principal ..."
$bodyFile = New-TemporaryFile
@{ principalId = $principal; resourceId = $graphSp; appRoleId = $roleId } | ConvertTo-Json -Compress | Set-Content -Path $bodyFile -NoNewline
for ($try = 1; $try -le 5; $try++) {
    $existing = az rest --method GET --resource $graph --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" --query "length(value[?appRoleId=='$roleId' && resourceId=='$graphSp'])" -o tsv 2>$null
    if ($existing -and $existing -ne '0') { Write-Host "$roleName is already granted."; exit 0 }
    $output = az rest --method POST --resource $graph --url "$graph/v1.0/servicePrincipals/$principal/appRoleAssignments" --headers 'Content-Type=application/json' --body "@$bodyFile" -o none 2>&1
    if ($LASTEXITCODE -eq 0) {
        Write-Host "Granted $roleName. Managed identity tokens are cached for up to 24 hours, so the collector may get"
        Write-Host '403 until its token renews; the next scheduled run after that collects every missed day.'
        exit 0
    }
    $text = "$output"
    if ($text -match 'Authorization_RequestDenied|Forbidden|403|Insufficient privileges') {
        Show-Fallback 'the signed-in account may not grant application permissions'
    }
    if ($try -ge 5) { Show-Fallback $text }
    Start-Sleep -Seconds $pause
}
