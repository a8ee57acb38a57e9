// The `herald` command line: one binary, subcommands (tools/cmd_*.cpp).
// Exit status 0 on success, 1 on a runtime error, 2 on a usage error;
// errors are one line on stderr starting "herald: error:". See docs/CLI.md.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>
#include <exception>

#include "tools/cli.hpp"

namespace {

// The deepest subcommand that was given (e.g. `topic create`).
const CLI::App* deepest(const CLI::App* app) {
  for (const CLI::App* sub : app->get_subcommands())
    if (sub->parsed()) return deepest(sub);
  return app;
}

std::string command_path(const CLI::App* app) {
  std::string path;
  for (const CLI::App* a = app; a != nullptr && a->get_parent() != nullptr; a = a->get_parent())
    path = a->get_name() + (path.empty() ? "" : " " + path);
  return path;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace herald::tools;
  CLI::App app{"herald: a shared-memory event bus for processes on one host (docs/CLI.md)", "herald"};
  app.require_subcommand(1);
  app.fallthrough();  // --bus and --json are accepted after the subcommand too
  Context ctx;
  ctx.terminal = ::isatty(STDOUT_FILENO) == 1;
  ctx.tty = ctx.terminal && std::getenv("NO_COLOR") == nullptr;
  app.add_option("--bus", ctx.bus_option, "bus name (default: $HERALD_BUS, else 'default')")
      ->envname("HERALD_BUS")
      ->check(CLI::Validator(
          [](std::string& s) -> std::string {
            bool ok = !s.empty() && s.size() <= 64;
            for (char c : s)
              ok = ok && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-');
            if (ok && s.front() == '-') return "bus name '" + s + "' starts with '-'";
            return ok ? std::string() : "bus name '" + s + "' is not 1-64 characters of [A-Za-z0-9_-]";
          },
          "BUS"));
  app.add_flag("--json", ctx.json, "machine-readable output (one JSON document, or JSON lines for streams)");

  add_topic_commands(app, ctx);
  add_publish_command(app, ctx);
  add_consume_commands(app, ctx);
  add_trace_command(app, ctx);
  add_groups_commands(app, ctx);
  add_dlq_commands(app, ctx);
  add_stat_command(app, ctx);
  add_daemon_commands(app, ctx);
  add_doctor_command(app, ctx);
  add_demo_commands(app, ctx);
  add_bench_command(app, ctx);

  const CLI::App* cmd = nullptr;
  try {
    app.parse(argc, argv);
    cmd = deepest(&app);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    const CLI::App* where = deepest(&app);
    if (where == &app) {
      // 'herald frobnicate': CLI11 says only that a subcommand is required.
      for (int i = 1; i < argc; ++i) {
        const std::string a = argv[i];
        if (a == "--bus") {
          ++i;  // its value
          continue;
        }
        if (a.empty() || a.front() == '-') continue;
        bool known = false;
        for (const CLI::App* sub : app.get_subcommands({})) known = known || sub->get_name() == a;
        if (!known) {
          std::fprintf(stderr, "herald: error: unknown command '%s' (see 'herald --help')\n", a.c_str());
          return 2;
        }
        break;
      }
    }
    const std::string path = command_path(where);
    std::fprintf(stderr, "herald: error: %s (see 'herald %s%s--help')\n", e.what(), path.c_str(),
                 path.empty() ? "" : " ");
    return 2;
  }
  auto it = ctx.handlers.find(cmd);
  if (it == ctx.handlers.end()) {
    std::fprintf(stderr, "herald: error: '%s' needs a subcommand (see 'herald %s --help')\n",
                 command_path(cmd).c_str(), command_path(cmd).c_str());
    return 2;
  }
  try {
    return it->second();
  } catch (const UsageError& e) {
    std::fprintf(stderr, "herald: error: %s (see 'herald %s --help')\n", e.what(), command_path(cmd).c_str());
    return 2;
  } catch (const std::exception& e) {
    return runtime_error(std::string("unexpected failure: ") + e.what());
  }
}
