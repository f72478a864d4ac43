-- Handlers of the codex-sys client: progress echo, messages through vim.notify, and a report of what
-- each workspace/executeCommand did (Neovim's default handler drops results silently, and code actions
-- run their command through it).
local state = require('codex_sys.state')

local M = {}

local levels = vim.log.levels
local message_levels = { [1] = levels.ERROR, [2] = levels.WARN, [3] = levels.INFO, [4] = levels.DEBUG }

local function notify(message, level)
  vim.notify('codex-sys: ' .. message, level or levels.INFO)
end
M.notify = notify

-- The server shows what a person must see (window/showMessage) and fails the request with the same
-- sentence: say it once.
local recent = {} -- message -> vim.loop.now() when shown
local RECENT_MS = 3000

local function shown_recently(message)
  local at = recent[message]
  return at ~= nil and vim.loop.now() - at < RECENT_MS
end

local function remember(message)
  local now = vim.loop.now()
  for text, at in pairs(recent) do
    if now - at >= RECENT_MS then
      recent[text] = nil
    end
  end
  recent[message] = now
end

--- Whether a message the server showed recently contains `text`.
function M.said_recently(text)
  local now = vim.loop.now()
  for message, at in pairs(recent) do
    if now - at < RECENT_MS and message:find(text, 1, true) then
      return true
    end
  end
  return false
end

-- The server's messages already say where they come from ("Codex: task … completed").
local function notify_server(message, level)
  if level == levels.ERROR and shown_recently(message) then
    return
  end
  if message:match('^Codex') then
    vim.notify(message, level or levels.INFO)
  else
    notify(message, level)
  end
end
M.notify_server = notify_server

local function first_argument(params)
  local args = params and params.arguments
  if type(args) == 'table' and type(args[1]) == 'table' then
    return args[1]
  end
  return {}
end

local function plural(n, word)
  return string.format('%d %s%s', n, word, n == 1 and '' or 's')
end

--- Tells the user what an executeCommand did. `params` are the ExecuteCommandParams sent.
function M.report(err, result, params, client_id)
  local command = params and params.command or '?'
  local arg = first_argument(params)
  state.add_result({ client_id = client_id, command = command, arguments = arg, result = result, error = err })
  if err then
    notify_server(err.message or tostring(err), levels.ERROR)
    return
  end
  if type(result) ~= 'table' then
    return
  end
  if command == 'codexSys.runTask' then
    state.remember_task(result.taskId)
    notify(string.format('task %s started', tostring(result.taskId)))
  elseif command == 'codexSys.applyTask' then
    local applied = type(result.applied) == 'table' and result.applied or {}
    local skipped = type(result.skipped) == 'table' and result.skipped or {}
    if #applied > 0 or #skipped == 0 then
      notify(string.format('applied %s of task %s', plural(#applied, 'change'), tostring(arg.taskId)))
    end
    for _, skip in ipairs(skipped) do
      local reason = tostring(skip.reason)
      if not M.said_recently(reason) then -- the server usually tells the reasons itself
        notify(string.format('change %s of task %s not applied: %s', tostring(skip.hunk), tostring(arg.taskId),
          reason), levels.WARN)
      end
    end
  elseif command == 'codexSys.discardTask' then
    notify(string.format('discarded the changes of task %s', tostring(result.taskId or arg.taskId)))
  elseif command == 'codexSys.cancelTask' then
    notify(string.format('task %s: %s', tostring(result.taskId or arg.taskId), tostring(result.state)))
  end
end

-- token -> title, for the reports and end of a progress (they carry no title)
local titles = {}

local function echo(text)
  local width = math.max(vim.v.echospace - 1, 20)
  if vim.fn.strdisplaywidth(text) > width then
    text = vim.fn.strcharpart(text, 0, width - 1) .. '…'
  end
  vim.api.nvim_echo({ { text } }, false, {})
end

local function on_progress(result, client_id, options)
  local value = type(result) == 'table' and result.value
  if type(value) ~= 'table' or not value.kind then
    return
  end
  local token = result.token
  if value.kind == 'begin' then
    titles[token] = value.title
  end
  local title = titles[token] or 'task'
  if value.kind == 'end' then
    titles[token] = nil
  end
  state.add_progress({
    client_id = client_id, token = token, kind = value.kind, title = title, message = value.message,
    percentage = value.percentage,
  })
  if not options().progress then
    return
  end
  local text = title
  local message = value.message
  if message and message ~= '' then
    -- a message may repeat the title ("Codex: task … completed")
    text = message:sub(1, #title + 1) == title .. ':' and message or (title .. ': ' .. message)
  end
  if value.percentage then
    text = string.format('%s (%d%%)', text, value.percentage)
  end
  if value.kind == 'end' and not value.message then
    text = text .. ': done'
  end
  echo(text)
end

--- Neovim 0.7 creates (and renames) a file only in a folder that exists: the whole edit fails
--- otherwise, after applying what came before. Newer Neovim makes the parent folders first; so does this.
local function make_parent_folders(edit)
  if type(edit) ~= 'table' or type(edit.documentChanges) ~= 'table' then
    return
  end
  for _, change in ipairs(edit.documentChanges) do
    local uri = (change.kind == 'create' and change.uri) or (change.kind == 'rename' and change.newUri) or nil
    if type(uri) == 'string' and uri:match('^file:') then
      local parent = vim.fn.fnamemodify(vim.uri_to_fname(uri), ':h')
      if vim.fn.isdirectory(parent) == 0 then
        vim.fn.mkdir(parent, 'p')
      end
    end
  end
end

--- The `handlers` table given to vim.lsp.start_client. `options()` gives the options in effect (they
--- may change after the client started).
function M.for_client(options)
  return {
    ['$/progress'] = function(err, result, ctx, config)
      vim.lsp.handlers['$/progress'](err, result, ctx, config)
      on_progress(result, ctx.client_id, options)
    end,
    ['workspace/applyEdit'] = function(err, params, ctx, config)
      if params then
        pcall(make_parent_folders, params.edit)
        -- without its label, which Neovim would print ("Workspace edit …"): the result is reported
        params = { edit = params.edit }
      end
      return vim.lsp.handlers['workspace/applyEdit'](err, params, ctx, config)
    end,
    ['window/showMessage'] = function(_, result, _, _)
      if type(result) == 'table' and result.message then
        notify_server(result.message, message_levels[result.type] or levels.INFO)
        remember(result.message)
      end
      return vim.NIL
    end,
    ['workspace/executeCommand'] = function(err, result, ctx, _)
      M.report(err, result, ctx.params, ctx.client_id)
    end,
  }
end

return M
