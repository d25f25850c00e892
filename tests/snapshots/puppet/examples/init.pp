# Apply with: puppet apply --modulepath .. examples/init.pp
class { 'fleetkit':
  team => 'platform',
}
