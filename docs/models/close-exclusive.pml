/*
 * herald: topic delete's closed bit against a single-producer claim that
 * moves `tail` with a plain store instead of a CAS (shm/ring_log.hpp,
 * RingLogWriter::try_claim; shm/topic_map.cpp, TopicMap::close).
 *
 * The danger: the producer loads tail (no closed bit), the closer sets the
 * bit with a fetch_or, the producer stores tail + size and so erases it;
 * from then on no claim and no read learns that the topic is closed.
 *
 * The protocol modelled (the default build):
 *   producer, per claim:  t = tail; if closed: stop
 *                         slot = candidate(t)             (a store)
 *                         raw = tail                      (a load, no fence)
 *                         if raw != t: slot = empty; stop (it saw the bit)
 *                         tail = t + size                 (a plain store)
 *                         slot = won(t); slot = empty
 *   closer:               repeat: tail |= closed          (locked RMW)
 *                                 membarrier()            (every registered
 *                                   thread runs a full barrier)
 *                                 wait until slot is not a candidate
 *                                   (or its owner is dead)
 *                         until the bit is still set afterwards
 *
 * x86 is TSO: the producer's stores wait in a FIFO store buffer (flushed
 * by the `flush` process at any time) and its loads read its own buffer
 * first, so the slot store can still be in the buffer when the re-load of
 * tail runs -- the store-buffering pattern that a plain compiler barrier
 * does not prevent. membarrier is modelled as the closer waiting until the
 * producer's buffer is empty at some instant: the kernel's IPI makes the
 * producer's CPU execute a full barrier. A killed producer's retired
 * stores still drain from its buffer.
 *
 * Compile-time switches:
 *   NOMB       the closer does not call membarrier: SPIN finds the bit lost
 *   NORELOAD   the producer does not re-load tail after naming t in its
 *              slot: SPIN finds the bit lost
 *   NOWAIT     the closer re-checks the bit without waiting for a candidate
 *              to resolve: SPIN finds the bit lost
 *   NOKILL     the producer is never killed
 *   NCLAIM     claims the producer attempts (default 3)
 *
 * Checked: once the closer is done and the producer is done (or dead, its
 * buffer drained), tail carries the closed bit; and every claim that
 * returned "ok" moved tail before the bit was finally in place (the final
 * tail is at or past it). Run as in README.md ("Running a check").
 */
#ifndef NCLAIM
#define NCLAIM 3
#endif
#define CLOSED 1          /* tail's closed bit; positions step by 2 */
#define SZ     2          /* one claim's size */
#define V_TAIL 0
#define V_SLOT 1
#define S_EMPTY 0
#define S_CAND  1
#define S_WON   2
#define SLOTV(st, p) ((p) * 4 + (st))
#define SLOT_ST(v)   ((v) % 4)
#define SBMAX 4

byte mem[2];              /* mem[V_TAIL], mem[V_SLOT] */
byte sb_var[SBMAX];       /* the producer's store buffer, oldest first */
byte sb_val[SBMAX];
byte sb_n = 0;
bool pdone = false;       /* the producer returned (ok claims done, or closed) */
bool dead = false;        /* the producer was killed */
bool cdone = false;
byte ok_end = 0;          /* ghost: tail after the last claim that returned ok */

/* The producer's load: its newest buffered store to the variable, else memory. */
inline pload(var, out) {
  d_step {
    out = mem[var];
    i = 0;
    do
    :: i < sb_n -> if :: sb_var[i] == var -> out = sb_val[i] :: else -> skip fi; i++
    :: else -> break
    od
  }
}
inline pstore(var, val) {
  atomic { sb_n < SBMAX -> sb_var[sb_n] = var; sb_val[sb_n] = val; sb_n++ }
}

proctype producer() {
  byte t, raw, i, k = 0;
  {
  do
  :: k == NCLAIM -> break
  :: k < NCLAIM ->
     pload(V_TAIL, t);
     if :: (t & CLOSED) != 0 -> break :: else -> skip fi;
     pstore(V_SLOT, SLOTV(S_CAND, t));
#ifndef NORELOAD
     pload(V_TAIL, raw);
     if
     :: raw != t -> pstore(V_SLOT, SLOTV(S_EMPTY, 0)); break
     :: else -> skip
     fi;
#endif
     pstore(V_TAIL, t + SZ);
     pstore(V_SLOT, SLOTV(S_WON, t));
     pstore(V_SLOT, SLOTV(S_EMPTY, 0));
     ok_end = t + SZ;
     k++
  od;
  pdone = true
  } unless { dead }   /* killed: stops at any step; its buffer still drains */
}

/* The CPU drains the producer's store buffer, oldest first, at any time. */
proctype flush() {
  byte i;
end:
  do
  :: atomic {
       sb_n > 0 ->
       mem[sb_var[0]] = sb_val[0];
       i = 1;
       do
       :: i < sb_n -> sb_var[i - 1] = sb_var[i]; sb_val[i - 1] = sb_val[i]; i++
       :: else -> break
       od;
       sb_n--
     }
  od
}

proctype closer() {
  do
  :: atomic { mem[V_TAIL] = mem[V_TAIL] | CLOSED };   /* fetch_or: locked, on memory */
#ifndef NOMB
     (sb_n == 0);                                     /* membarrier GLOBAL_EXPEDITED */
#endif
     /* wait while the slot names a candidate and its owner lives (a dead
        owner's buffer drains first: process exit is far slower) */
#ifndef NOWAIT
     (SLOT_ST(mem[V_SLOT]) != S_CAND || (dead && sb_n == 0));
#endif
     if
     :: (mem[V_TAIL] & CLOSED) != 0 -> break
     :: else -> skip                                  /* erased: set it again */
     fi
  od;
  cdone = true
}

#ifndef NOKILL
proctype killer() {
  if
  :: !pdone -> dead = true
  :: skip
  fi
}
#endif

init {
  atomic {
    run producer();
    run flush();
    run closer();
#ifndef NOKILL
    run killer();
#endif
  }
  (cdone && (pdone || dead) && sb_n == 0);
  assert((mem[V_TAIL] & CLOSED) != 0);
  assert((mem[V_TAIL] & ~CLOSED) >= ok_end)
}
