// A gtest fixture with a bus of its own. BusGuard names the bus (unique per
// test), sets HERALD_NO_AUTOSTART=1 and a private run directory, and removes
// every shared-memory object of the bus when the test ends, failed or not;
// SetUp attaches bus_ to it. Declared in this order, bus_ is destroyed
// before guard_ removes the objects, and a derived fixture's own members
// (producers, consumers, a daemon) before either.
//
//   class OrdersTest : public test::BusFixture<> { ... };
//   class RetryTest : public test::BusFixture<::testing::TestWithParam<FailBy>> {
//     void SetUp() override {
//       BusFixture::SetUp();
//       if (HasFatalFailure()) return;
//       ... create topics ...
//     }
//   };
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <utility>

#include "herald/bus.hpp"
#include "tests/support/test_env.hpp"

namespace herald::test {

template <class Base = ::testing::Test>
class BusFixture : public Base {
 protected:
  void SetUp() override {
    auto b = Bus::attach(guard_.bus());
    ASSERT_TRUE(b) << b.error().message();
    bus_ = std::make_unique<Bus>(std::move(b).value());
  }

  BusGuard guard_;
  std::unique_ptr<Bus> bus_;
};

}  // namespace herald::test
