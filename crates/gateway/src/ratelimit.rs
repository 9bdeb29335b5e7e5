//! Rate limits per principal (anonymous callers: per client IP), one budget
//! per role, shared by every gateway replica through Redis.
//!
//! **Algorithm: GCRA** (the generic cell rate algorithm, a leaky bucket kept as
//! one number). A budget is `requests` per `period` with a `burst`: requests
//! are spaced by the emission interval `T = period / requests`, and a caller
//! may run ahead of that schedule by up to `burst` requests. The state of a
//! caller is its theoretical arrival time (TAT); a request is admitted when
//! `TAT + T - burst·T <= now`, and then moves TAT to `max(TAT, now) + T`. One
//! key per caller, one round trip per request, no background refill.
//!
//! **Distributed.** The check-and-update runs in Redis as one Lua script
//! ([`GCRA_SCRIPT`]): atomic, with Redis's own clock (`TIME`), so replicas
//! with skewed clocks still share one budget exactly.
//!
//! **Fallback.** When Redis does not answer (error, or no answer within
//! `REDIS_TIMEOUT`), every replica falls back to its own in-memory GCRA
//! (`governor`), so the service keeps running with a per-replica budget; the
//! gauge `order_platform_gateway_ratelimit_fallback` is 1 and a warning is
//! logged. Redis is tried again at most once per `PROBE_INTERVAL`; its first
//! answer switches back (gauge 0, an info line).
//!
//! **Bounded memory.** The in-memory limiter keeps one entry per caller it has
//! seen; callers are many and come and go. [`Limiter::forget_idle`] drops the
//! entries that are back to a fresh state (the caller's whole burst is
//! available again, so forgetting it changes no decision): the gateway calls it
//! every [`FORGET_IDLE_EVERY`], and a check calls it at once when the entries
//! pass [`MEMORY_KEYS_SWEEP_AT`] in between. What stays is only the callers
//! seen within one burst window.

use governor::clock::{Clock, DefaultClock};
use governor::middleware::StateInformationMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::{Quota, RateLimiter};
use order_auth::{Principal, Role};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Longest wait for Redis before a request is decided in memory.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);
/// While in fallback, Redis is tried again at most this often.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);

/// How often the gateway forgets idle callers of the in-memory limiter.
pub const FORGET_IDLE_EVERY: Duration = Duration::from_secs(10);
/// Entries of one in-memory limiter beyond which a check sweeps at once.
pub const MEMORY_KEYS_SWEEP_AT: usize = 100_000;
/// Checks between two looks at the entry count (counting visits every shard).
const SWEEP_CHECK_EVERY: u64 = 1024;

/// The atomic GCRA step. KEYS[1]: the caller's key. ARGV[1]: emission
/// interval in µs, ARGV[2]: burst. Returns {admitted 0|1, remaining,
/// retry-after µs, reset µs (until the whole burst is available again)}.
pub const GCRA_SCRIPT: &str = r#"
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000000 + tonumber(now_parts[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local new_tat = tat + interval
local allowed_at = new_tat - interval * burst
if allowed_at > now then
  return {0, 0, allowed_at - now, tat - now}
end
redis.call('SET', KEYS[1], new_tat, 'PX', math.ceil((new_tat - now) / 1000) + 1000)
local remaining = math.floor((now + interval * burst - new_tat) / interval)
return {1, remaining, 0, new_tat - now}
"#;

/// Who a budget applies to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Class {
    Anonymous,
    Role(Role),
}

impl Class {
    pub fn parse(text: &str) -> Option<Class> {
        match text {
            "anonymous" => Some(Class::Anonymous),
            other => Role::parse(other).map(Class::Role),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Class::Anonymous => "anonymous",
            Class::Role(role) => role.as_str(),
        }
    }
}

/// `requests` per `period`, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Budget {
    pub requests: u32,
    pub period: Duration,
    pub burst: u32,
}

impl Budget {
    /// `100/1m` (burst = requests) or `100/1m+20` (burst 20).
    pub fn parse(text: &str) -> Result<Budget, String> {
        let bad = || {
            format!(
                "invalid budget {text:?}; use REQUESTS/PERIOD or REQUESTS/PERIOD+BURST, e.g. 600/1m or 600/1m+50"
            )
        };
        let (requests, rest) = text.split_once('/').ok_or_else(bad)?;
        let (period, burst) = match rest.split_once('+') {
            Some((period, burst)) => (period, Some(burst)),
            None => (rest, None),
        };
        let requests: u32 = requests.trim().parse().map_err(|_| bad())?;
        let period = parse_period(period.trim()).ok_or_else(bad)?;
        let burst = match burst {
            Some(b) => b.trim().parse().map_err(|_| bad())?,
            None => requests,
        };
        if requests == 0 || burst == 0 {
            return Err(format!("{text:?}: requests and burst must be at least 1"));
        }
        Ok(Budget {
            requests,
            period,
            burst,
        })
    }

    /// Time between two requests at the sustained rate.
    pub fn interval(&self) -> Duration {
        (self.period / self.requests).max(Duration::from_micros(1))
    }
}

fn parse_period(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (n, unit) = text.split_at(split);
    let n: u64 = n.parse().ok()?;
    let secs = match unit {
        "ms" => return (n > 0).then(|| Duration::from_millis(n)),
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (secs > 0).then(|| Duration::from_secs(secs))
}

/// The budgets of every class. A principal with several roles gets the most
/// generous of its roles' budgets (by sustained rate).
#[derive(Clone, Debug)]
pub struct Budgets(pub HashMap<Class, Budget>);

impl Default for Budgets {
    fn default() -> Budgets {
        let per_minute = |requests: u32, burst: u32| Budget {
            requests,
            period: Duration::from_secs(60),
            burst,
        };
        Budgets(HashMap::from([
            (Class::Anonymous, per_minute(60, 20)),
            (Class::Role(Role::Customer), per_minute(600, 100)),
            (Class::Role(Role::Analyst), per_minute(1200, 200)),
            (Class::Role(Role::Ops), per_minute(3000, 300)),
            (Class::Role(Role::Admin), per_minute(3000, 300)),
        ]))
    }
}

impl Budgets {
    /// The class and budget of a caller.
    pub fn for_caller(&self, principal: Option<&Principal>) -> (Class, Budget) {
        let anonymous = (Class::Anonymous, self.0[&Class::Anonymous]);
        let Some(principal) = principal else {
            return anonymous;
        };
        principal
            .roles
            .iter()
            .filter_map(|role| {
                let class = Class::Role(*role);
                self.0.get(&class).map(|budget| (class, *budget))
            })
            .min_by_key(|(_, budget)| budget.interval())
            // Authenticated with no role: a 403 is coming; budget it as anonymous.
            .unwrap_or(anonymous)
    }
}

/// The outcome of one check, for the `RateLimit-*` headers.
#[derive(Clone, Copy, Debug)]
pub struct Decision {
    pub admitted: bool,
    pub limit: u32,
    pub remaining: u32,
    /// Until the next request would be admitted (0 when admitted).
    pub retry_after: Duration,
    /// Until the whole burst is available again.
    pub reset: Duration,
}

type Memory =
    RateLimiter<String, DefaultKeyedStateStore<String>, DefaultClock, StateInformationMiddleware>;

/// The rate limiter of one gateway replica.
pub struct Limiter {
    budgets: Budgets,
    /// Distinguishes deployments sharing one Redis (`<prefix>:<class>:<caller>`).
    prefix: String,
    redis: Option<RedisBackend>,
    /// One in-memory GCRA per class: the fallback, or the only limiter without Redis.
    memory: HashMap<Class, Memory>,
    clock: DefaultClock,
    /// In-memory checks so far, to look at the entry count now and then.
    memory_checks: std::sync::atomic::AtomicU64,
}

struct RedisBackend {
    client: redis::Client,
    script: redis::Script,
    /// The shared connection while Redis answers; `None` after a failure until
    /// a probe reconnects. Cloned per request (multiplexed).
    connection: tokio::sync::RwLock<Option<redis::aio::MultiplexedConnection>>,
    /// True while requests are decided in memory. Written on every switch.
    fallback: AtomicBool,
    /// Earliest time of the next reconnection attempt while in fallback.
    next_probe: Mutex<Instant>,
    /// Held by the one task connecting.
    connecting: tokio::sync::Mutex<()>,
    /// When Redis last failed (a request or a connection attempt).
    last_failure: Mutex<Option<Instant>>,
}

impl Limiter {
    /// A limiter with `budgets`; with `redis_url`, distributed (Redis may be
    /// down at start: it then starts in fallback).
    pub fn new(budgets: Budgets, redis_url: Option<&str>, prefix: &str) -> Result<Limiter, String> {
        let redis = match redis_url {
            Some(url) => {
                let client = redis::Client::open(url)
                    .map_err(|e| format!("invalid Redis URL (--redis-url): {e}"))?;
                Some(RedisBackend {
                    client,
                    script: redis::Script::new(GCRA_SCRIPT),
                    connection: tokio::sync::RwLock::new(None),
                    fallback: AtomicBool::new(false),
                    next_probe: Mutex::new(Instant::now()),
                    connecting: tokio::sync::Mutex::new(()),
                    last_failure: Mutex::new(None),
                })
            }
            None => None,
        };
        let memory = budgets
            .0
            .iter()
            .map(|(class, budget)| {
                let quota = Quota::with_period(budget.interval())
                    .expect("a positive interval")
                    .allow_burst(NonZeroU32::new(budget.burst).unwrap_or(NonZeroU32::MIN));
                let limiter =
                    RateLimiter::keyed(quota).with_middleware::<StateInformationMiddleware>();
                (*class, limiter)
            })
            .collect();
        metrics::gauge!("order_platform_gateway_ratelimit_fallback").set(0.0);
        Ok(Limiter {
            budgets,
            prefix: prefix.to_string(),
            redis,
            memory,
            clock: DefaultClock::default(),
            memory_checks: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// The budgets it applies.
    pub fn budgets(&self) -> &Budgets {
        &self.budgets
    }

    /// Whether requests are being decided in memory although Redis is configured.
    pub fn in_fallback(&self) -> bool {
        self.redis
            .as_ref()
            .is_some_and(|r| r.fallback.load(Ordering::Relaxed))
    }

    /// Forgets the in-memory entries of callers whose state is back to a fresh
    /// one (see the module header): no decision changes, memory is returned.
    pub fn forget_idle(&self) {
        for limiter in self.memory.values() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }

    /// Callers the in-memory limiter holds an entry for now.
    pub fn memory_entries(&self) -> usize {
        self.memory.values().map(|l| l.len()).sum()
    }

    /// Checks (and, when admitted, spends) one request of `caller` (subject or IP).
    pub async fn check(&self, principal: Option<&Principal>, caller: &str) -> Decision {
        let (class, budget) = self.budgets.for_caller(principal);
        let key = format!("{}:{}:{caller}", self.prefix, class.as_str());
        if let Some(redis) = &self.redis
            && let Some(decision) = redis.check(&key, &budget).await
        {
            return decision;
        }
        self.check_memory(class, &budget, key)
    }

    fn check_memory(&self, class: Class, budget: &Budget, key: String) -> Decision {
        let Some(limiter) = self.memory.get(&class) else {
            return Decision {
                admitted: true,
                limit: budget.burst,
                remaining: budget.burst,
                retry_after: Duration::ZERO,
                reset: Duration::ZERO,
            };
        };
        let checks = self.memory_checks.fetch_add(1, Ordering::Relaxed);
        if checks.is_multiple_of(SWEEP_CHECK_EVERY) && limiter.len() > MEMORY_KEYS_SWEEP_AT {
            limiter.retain_recent();
        }
        match limiter.check_key(&key) {
            Ok(state) => {
                let remaining = state.remaining_burst_capacity();
                Decision {
                    admitted: true,
                    limit: budget.burst,
                    remaining,
                    retry_after: Duration::ZERO,
                    reset: budget.interval() * (budget.burst - remaining.min(budget.burst)),
                }
            }
            Err(not_until) => {
                let wait = not_until.wait_time_from(self.clock.now());
                Decision {
                    admitted: false,
                    limit: budget.burst,
                    remaining: 0,
                    retry_after: wait,
                    reset: budget.interval() * budget.burst,
                }
            }
        }
    }
}

impl RedisBackend {
    /// The decision of Redis, or `None` when Redis cannot decide now.
    async fn check(&self, key: &str, budget: &Budget) -> Option<Decision> {
        let connection = self.connection().await?;
        let mut connection = connection;
        let mut invocation = self.script.key(key);
        invocation
            .arg(budget.interval().as_micros() as u64)
            .arg(budget.burst);
        let answer = tokio::time::timeout(
            REDIS_TIMEOUT,
            invocation.invoke_async::<Vec<i64>>(&mut connection),
        )
        .await;
        match answer {
            Ok(Ok(values)) if values.len() == 4 => {
                self.healthy();
                let micros = |v: i64| Duration::from_micros(v.max(0) as u64);
                Some(Decision {
                    admitted: values[0] == 1,
                    limit: budget.burst,
                    remaining: values[1].clamp(0, u32::MAX as i64) as u32,
                    retry_after: micros(values[2]),
                    reset: micros(values[3]),
                })
            }
            Ok(Ok(values)) => {
                self.failed(format!("unexpected answer {values:?}")).await;
                None
            }
            Ok(Err(e)) => {
                self.failed(e.to_string()).await;
                None
            }
            Err(_) => {
                self.failed(format!("no answer within {REDIS_TIMEOUT:?}"))
                    .await;
                None
            }
        }
    }

    /// The connection, connecting first when there is none: one task
    /// connects while the others wait for it (so a burst at start-up is not
    /// decided in memory); in fallback, only when a probe is due.
    async fn connection(&self) -> Option<redis::aio::MultiplexedConnection> {
        if let Some(connection) = self.connection.read().await.as_ref() {
            return Some(connection.clone());
        }
        if self.fallback.load(Ordering::Relaxed) {
            let mut next = self.next_probe.lock().unwrap_or_else(|e| e.into_inner());
            if Instant::now() < *next {
                return None;
            }
            *next = Instant::now() + PROBE_INTERVAL;
        }
        let _one_at_a_time = self.connecting.lock().await;
        if let Some(connection) = self.connection.read().await.as_ref() {
            return Some(connection.clone());
        }
        if self.fallback.load(Ordering::Relaxed) && self.probed_recently() {
            return None;
        }
        let connecting = tokio::time::timeout(
            REDIS_TIMEOUT * 4,
            self.client.get_multiplexed_async_connection(),
        )
        .await;
        match connecting {
            Ok(Ok(connection)) => {
                *self.connection.write().await = Some(connection.clone());
                Some(connection)
            }
            Ok(Err(e)) => {
                self.failed(e.to_string()).await;
                None
            }
            Err(_) => {
                self.failed("no connection within the timeout".into()).await;
                None
            }
        }
    }

    /// Whether a connection attempt failed less than a probe interval ago
    /// (the tasks that waited for it then give up at once).
    fn probed_recently(&self) -> bool {
        let last = *self.last_failure.lock().unwrap_or_else(|e| e.into_inner());
        last.is_some_and(|at| at.elapsed() < PROBE_INTERVAL)
    }

    async fn failed(&self, reason: String) {
        *self.connection.write().await = None;
        *self.last_failure.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        *self.next_probe.lock().unwrap_or_else(|e| e.into_inner()) =
            Instant::now() + PROBE_INTERVAL;
        self.enter_fallback(&reason);
    }

    fn enter_fallback(&self, reason: &str) {
        if !self.fallback.swap(true, Ordering::Relaxed) {
            metrics::gauge!("order_platform_gateway_ratelimit_fallback").set(1.0);
            tracing::warn!(
                reason,
                "Redis is unreachable: rate limits fall back to this replica's memory \
                 (budgets are per replica until Redis answers again)"
            );
        }
    }

    fn healthy(&self) {
        if self.fallback.swap(false, Ordering::Relaxed) {
            metrics::gauge!("order_platform_gateway_ratelimit_fallback").set(0.0);
            tracing::info!("Redis answers again: rate limits are shared across replicas again");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_with_and_without_burst() {
        assert_eq!(
            Budget::parse("600/1m"),
            Ok(Budget {
                requests: 600,
                period: Duration::from_secs(60),
                burst: 600
            })
        );
        assert_eq!(Budget::parse("10/1s+3").unwrap().burst, 3);
        for bad in ["", "10", "10/", "0/1m", "10/1m+0", "10/1x", "x/1m", "10/0s"] {
            assert!(Budget::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_most_generous_role_wins_and_no_role_is_anonymous() {
        let budgets = Budgets::default();
        let p = |roles: &[Role]| Principal {
            subject: "s".into(),
            roles: roles.iter().copied().collect(),
        };
        assert_eq!(
            budgets.for_caller(Some(&p(&[Role::Customer, Role::Ops]))).0,
            Class::Role(Role::Ops)
        );
        assert_eq!(budgets.for_caller(Some(&p(&[]))).0, Class::Anonymous);
        assert_eq!(budgets.for_caller(None).0, Class::Anonymous);
    }

    #[tokio::test]
    async fn in_memory_admits_the_burst_then_refuses_with_a_wait() {
        let budgets = Budgets(HashMap::from([(
            Class::Anonymous,
            Budget::parse("5/1h").unwrap(),
        )]));
        let limiter = Limiter::new(budgets, None, "t").unwrap();
        let mut admitted = 0;
        for _ in 0..15 {
            let d = limiter.check(None, "10.0.0.1").await;
            if d.admitted {
                admitted += 1;
            } else {
                assert!(d.retry_after > Duration::from_secs(60), "{d:?}");
            }
        }
        assert_eq!(admitted, 5);
        assert!(limiter.check(None, "10.0.0.2").await.admitted, "per caller");
    }

    #[tokio::test]
    async fn idle_callers_are_forgotten_and_busy_ones_kept() {
        let budgets = Budgets(HashMap::from([(
            Class::Anonymous,
            Budget::parse("10/1s+10").unwrap(),
        )]));
        let limiter = Limiter::new(budgets, None, "t").unwrap();
        for n in 0..1_000 {
            assert!(limiter.check(None, &format!("ip:{n}")).await.admitted);
        }
        assert_eq!(limiter.memory_entries(), 1_000);
        // Long enough for every burst to be whole again: nothing to remember.
        tokio::time::sleep(Duration::from_millis(1_100)).await;
        for _ in 0..10 {
            limiter.check(None, "ip:busy").await;
        }
        limiter.forget_idle();
        assert_eq!(limiter.memory_entries(), 1, "only the busy caller is kept");
        assert!(
            !limiter.check(None, "ip:busy").await.admitted,
            "and its state with it"
        );
    }
}
