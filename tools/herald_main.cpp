// The `herald` command line: one binary, subcommands. Exit status 0 on
// success, 1 on a runtime error, 2 on a usage error; errors are one line on
// stderr starting "herald: error:".
#include <CLI/CLI.hpp>
#include <cstdio>
#include <cstdlib>

#include "tools/demo.hpp"

int main(int argc, char** argv) {
  CLI::App app{"herald: a shared-memory event bus for processes on one host"};
  app.require_subcommand(1);
  std::string bus;
  bool json = false;
  app.add_option("--bus", bus, "bus name (default: $HERALD_BUS, else 'default')");
  app.add_flag("--json", json, "machine-readable output");

  herald::tools::DemoOptions demo;
  auto* demo_cmd = app.add_subcommand("demo", "run a producer and a consumer process and show events/s and latency");
  demo_cmd->add_option("--events", demo.events, "events in the throughput phase")->check(CLI::PositiveNumber);
  demo_cmd->add_option("--size", demo.size, "payload bytes")->check(CLI::Range(16, 60000));
  demo_cmd->add_option("--rate", demo.rate, "events/s in the latency phase")->check(CLI::Range(1, 10'000'000));
  demo_cmd->add_option("--seconds", demo.seconds, "length of the latency phase")->check(CLI::Range(1, 600));

  herald::tools::DemoChildOptions child;
  auto add_child = [&](const char* name) {
    auto* c = app.add_subcommand(name, "");
    c->group("");  // hidden: started by `herald demo`
    c->add_option("--bus", child.bus)->required();
    c->add_option("--topic", child.topic)->required();
    c->add_option("--group", child.group);
    c->add_option("--events", child.events)->required();
    c->add_option("--size", child.size);
    c->add_option("--rate", child.rate);
    return c;
  };
  auto* demo_prod = add_child("__demo-producer");
  auto* demo_cons = add_child("__demo-consumer");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fprintf(stderr, "herald: error: %s (see 'herald --help')\n", e.what());
    return 2;
  }
  if (!bus.empty()) ::setenv("HERALD_BUS", bus.c_str(), 1);
  demo.json = json;
  if (*demo_cmd) return herald::tools::run_demo(demo);
  if (*demo_prod) return herald::tools::demo_producer(child);
  if (*demo_cons) return herald::tools::demo_consumer(child);
  return 2;
}
