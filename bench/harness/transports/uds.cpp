// herald-bench's entry for the Unix domain socket peer (uds.hpp).
#include "bench/harness/transports/uds.hpp"

#include "bench/harness/peers.hpp"
#include "bench/harness/runner.hpp"

namespace herald::bench {

TransportEntry uds_transport() { return make_transport<UdsTransport>(); }

}  // namespace herald::bench
