//! A connection that does nothing, managed for each pool compared, and the
//! three pools set up alike: the pool benchmarks measure acquire and release alone.

use std::convert::Infallible;

/// The no-op connection's manager, for Reservoir's pool, deadpool and bb8.
pub struct Noop;

impl reservoir::pool::Manager for Noop {
    type Connection = ();
    async fn connect(&self) -> reservoir::Result<()> {
        Ok(())
    }
    async fn ping(&self, _: &mut ()) -> reservoir::Result<()> {
        Ok(())
    }
}

impl deadpool::managed::Manager for Noop {
    type Type = ();
    type Error = Infallible;
    async fn create(&self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn recycle(
        &self,
        _: &mut (),
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<Infallible> {
        Ok(())
    }
}

impl bb8::ManageConnection for Noop {
    type Connection = ();
    type Error = Infallible;
    async fn connect(&self) -> Result<(), Infallible> {
        Ok(())
    }
    async fn is_valid(&self, _: &mut ()) -> Result<(), Infallible> {
        Ok(())
    }
    fn has_broken(&self, _: &mut ()) -> bool {
        false
    }
}

/// The three pools the pool benchmarks compare, set up alike: `slots`
/// connections at most, no overflow, no bound on waiting acquires, no
/// check on checkout.
pub mod pools {
    use super::Noop;

    pub async fn reservoir(slots: usize) -> reservoir::pool::Pool<Noop> {
        reservoir::pool::Pool::builder(Noop)
            .pool_size(slots)
            .max_overflow(0)
            .max_waiting(None)
            .build()
            .await
            .expect("reservoir pool")
    }

    pub fn deadpool(slots: usize) -> deadpool::managed::Pool<Noop> {
        deadpool::managed::Pool::<Noop>::builder(Noop)
            .max_size(slots)
            .build()
            .expect("deadpool")
    }

    pub async fn bb8(slots: usize) -> bb8::Pool<Noop> {
        let slots = u32::try_from(slots).expect("a pool size that fits u32");
        bb8::Pool::builder()
            .max_size(slots)
            .test_on_check_out(false)
            .build(Noop)
            .await
            .expect("bb8")
    }
}
