// herald-bench's entry for the Redis Streams peer (redis.hpp).
#include "bench/harness/transports/redis.hpp"

#include "bench/harness/peers.hpp"
#include "bench/harness/runner.hpp"

namespace herald::bench {

TransportEntry redis_transport() { return make_transport<RedisTransport>(); }

}  // namespace herald::bench
