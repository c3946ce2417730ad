//! A connection that does nothing, managed for each pool compared: the
//! pool benchmarks measure acquire and release alone.

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
