//! The device side (`fleetkit agent …`): registration, machine-certificate enrollment,
//! the device manifest and its channel mirrors, policy sync with offline modes.
