// herald-bench's entry for the Boost.Interprocess message_queue peer (boost_mq.hpp).
#include "bench/harness/transports/boost_mq.hpp"

#include "bench/harness/peers.hpp"
#include "bench/harness/runner.hpp"

namespace herald::bench {

TransportEntry boost_mq_transport() { return make_transport<BoostMqTransport>(); }

}  // namespace herald::bench
