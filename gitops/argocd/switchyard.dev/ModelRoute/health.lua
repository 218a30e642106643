-- Argo CD health check for switchyard.dev/ModelRoute. Kept in the Switchyard repository
-- (gitops/argocd/), tested by operator/tests/argocd_health.rs.
-- The status is in kstatus format: Ready, Reconciling (proxies catching up) and Stalled
-- (refused: the user must act), plus Published and Synced. They are written by
-- operator/src/controller/snapshot.rs (`route_status`).
-- Lua 5.1, base and table functions only: argocd-cm scripts run without the string library
-- unless resource.customizations.useOpenLibs is set.
local hs = {}

local function condition(status, type_)
  if status.conditions == nil then
    return nil
  end
  for _, c in ipairs(status.conditions) do
    if c.type == type_ then
      return c
    end
  end
  return nil
end

local function is_true(c)
  return c ~= nil and c.status == "True"
end

-- "Reason: message", or whichever of the two is set.
local function describe(c)
  local reason = c.reason or ""
  local message = c.message or ""
  if reason == "" then
    return message
  end
  if message == "" then
    return reason
  end
  return reason .. ": " .. message
end

local status = obj.status
local generation = obj.metadata.generation
if status == nil or status.observedGeneration == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to publish the ModelRoute"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
    .. " (status is for generation " .. status.observedGeneration .. ")"
  return hs
end

-- Refused, or some of its models are (BackendNotFound, ModelConflict, InvalidSpec,
-- NameConflict): the user must act.
local stalled = condition(status, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- Published; some proxies still run an older snapshot (ProxiesSyncing).
local reconciling = condition(status, "Reconciling")
if is_true(reconciling) then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
  return hs
end

local ready = condition(status, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.status ~= "True" then
  -- Accepted, but the snapshot as a whole was not published (SnapshotInvalid): waiting does
  -- not change that.
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end

-- "serving <models> in snapshot <version>; <n/m proxies run the current snapshot>"
local parts = {}
local published = condition(status, "Published")
if published ~= nil and published.message ~= nil and published.message ~= "" then
  table.insert(parts, published.message)
end
local synced = condition(status, "Synced")
if synced ~= nil and synced.message ~= nil and synced.message ~= "" then
  table.insert(parts, synced.message)
end
hs.status = "Healthy"
if #parts == 0 then
  hs.message = ready.message or ""
else
  hs.message = table.concat(parts, "; ")
end
return hs
