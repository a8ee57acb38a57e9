// herald-bench's entry for the iceoryx peer (iceoryx.hpp).
#include "bench/harness/transports/iceoryx.hpp"

#include "bench/harness/peers.hpp"
#include "bench/harness/runner.hpp"

namespace herald::bench {

TransportEntry iceoryx_transport() { return make_transport<IceoryxTransport>(); }

}  // namespace herald::bench
