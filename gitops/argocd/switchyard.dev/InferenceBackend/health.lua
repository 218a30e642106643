-- Argo CD health check for switchyard.dev/InferenceBackend. Kept in the Switchyard repository
-- (gitops/argocd/), tested by operator/tests/argocd_health.rs.
-- The status is in kstatus format: Ready, Reconciling (pods starting, model loading) and
-- Stalled (the user must act), plus Warning, and Published from the snapshot publisher. They
-- are written by operator/src/controller/backend.rs and snapshot.rs.
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
  hs.message = "Waiting for the operator to reconcile the InferenceBackend"
  return hs
end
if generation ~= nil and status.observedGeneration < generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
    .. " (status is for generation " .. status.observedGeneration .. ")"
  return hs
end

-- The spec cannot be run as it is (InvalidSpec, LeaderWorkerSetMissing): the user must act.
local stalled = condition(status, "Stalled")
if is_true(stalled) then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end

-- Refused by the snapshot publisher (NameConflict, CredentialsMissing, InvalidSpec): the
-- proxies do not route to it. SnapshotInvalid is about the snapshot as a whole (no route
-- yet), not this backend; a condition from an older generation is about to be rewritten.
local published = condition(status, "Published")
if published ~= nil and published.status == "False" and published.reason ~= "SnapshotInvalid"
    and (published.observedGeneration == nil or generation == nil
      or published.observedGeneration >= generation) then
  hs.status = "Degraded"
  hs.message = "Not published: " .. describe(published)
  return hs
end

-- Pods being created, or the model still loading (Loading).
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
  hs.status = "Progressing"
  hs.message = describe(ready)
  return hs
end

if obj.spec ~= nil and obj.spec.vllm ~= nil and obj.spec.vllm.replicas == 0 then
  hs.status = "Suspended"
  hs.message = "Scaled to 0 serving groups (spec.vllm.replicas)"
  return hs
end

hs.status = "Healthy"
hs.message = ready.message or ""
local warning = condition(status, "Warning")
if is_true(warning) then
  hs.message = hs.message .. " (" .. describe(warning) .. ")"
end
return hs
