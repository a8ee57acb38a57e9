// herald-bench's entry for the pipe(2) peer (pipe.hpp).
#include "bench/harness/transports/pipe.hpp"

#include "bench/harness/peers.hpp"
#include "bench/harness/runner.hpp"

namespace herald::bench {

TransportEntry pipe_transport() { return make_transport<PipeTransport>(); }

}  // namespace herald::bench
