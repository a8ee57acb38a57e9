// Everything a herald user needs.
#pragma once

#include "herald/bus.hpp"
#include "herald/consumer.hpp"
#include "herald/errc.hpp"
#include "herald/event.hpp"
#include "herald/idempotent.hpp"
#include "herald/producer.hpp"
#include "herald/result.hpp"
#include "herald/stats.hpp"
