-- What the plugin remembers during a session: task ids seen (for completion and defaults), recent
-- progress reports and recent command results (both bounded).
local M = {
  task_ids = {}, -- ids seen, oldest first
  progress = {}, -- {client_id, token, kind, title, message, percentage}
  results = {}, -- {client_id, command, arguments, result, error}
}

local LIMIT = 200

local function push(list, item)
  table.insert(list, item)
  if #list > LIMIT then
    table.remove(list, 1)
  end
end

function M.remember_task(id)
  if type(id) ~= 'string' or id == '' then
    return
  end
  for i, known in ipairs(M.task_ids) do
    if known == id then
      table.remove(M.task_ids, i)
      break
    end
  end
  push(M.task_ids, id)
end

function M.latest_task()
  return M.task_ids[#M.task_ids]
end

function M.add_progress(item)
  push(M.progress, item)
end

function M.add_result(item)
  push(M.results, item)
end

function M.clear()
  M.task_ids, M.progress, M.results = {}, {}, {}
end

return M
