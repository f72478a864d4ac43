-- codex-sys user commands. The language client starts once require('codex_sys').setup{...} ran (or on
-- the first command, with the default options).
if vim.g.loaded_codex_sys then
  return
end
vim.g.loaded_codex_sys = true

if vim.fn.has('nvim-0.7.2') == 0 then
  vim.api.nvim_echo({ { 'codex-sys needs Neovim 0.7.2 or later', 'WarningMsg' } }, true, {})
  return
end

local function codex()
  return require('codex_sys')
end

local function complete_id(lead)
  return codex().complete_task_id(lead)
end

local command = vim.api.nvim_create_user_command

command('CodexRun', function(opts)
  local args = { instruction = opts.args }
  if opts.range > 0 then
    args.line1, args.line2 = opts.line1, opts.line2
  end
  codex().run(args)
end, { nargs = '*', range = true, desc = 'codex-sys: run a task (on the selection with a range)' })

command('CodexTasks', function()
  codex().tasks()
end, { nargs = 0, desc = 'codex-sys: list the tasks and act on one' })

command('CodexDiff', function(opts)
  codex().show_diff(opts.args)
end, { nargs = '?', complete = complete_id, desc = 'codex-sys: show the diff of a task (default: newest)' })

command('CodexApplyAll', function(opts)
  codex().apply_all(opts.args)
end, { nargs = '?', complete = complete_id, desc = 'codex-sys: apply every change of a task' })

command('CodexApply', function()
  codex().apply_here()
end, { nargs = 0, desc = 'codex-sys: apply the change under the cursor' })

command('CodexDiscard', function(opts)
  codex().discard(opts.args)
end, { nargs = '?', complete = complete_id, desc = 'codex-sys: discard the changes of a task' })

command('CodexCancel', function(opts)
  codex().cancel(opts.args)
end, { nargs = '?', complete = complete_id, desc = 'codex-sys: cancel a task (default: newest)' })
