// What every example does first: make its topics, or use them as they are
// when an earlier run made them. A failure (a bad name, no room) is printed.
#pragma once

#include <cstdio>
#include <string_view>

#include <herald/herald.hpp>

inline bool make_topic(herald::Bus& bus, std::string_view name, const herald::TopicConfig& config) {
  auto t = bus.create_topic(name, config);
  if (t || t.error().code == herald::Errc::kAlreadyExists) return true;
  std::fprintf(stderr, "%s\n", t.error().message().c_str());
  return false;
}
