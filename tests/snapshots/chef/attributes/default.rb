# frozen_string_literal: true

# The enrollment and policy server, and the org (fixed by the trust anchors).
default['fleetkit']['server_url'] = 'https://fleet.acme-corp.example:8443'
default['fleetkit']['org'] = 'acme-corp'

# Where the device belongs: reported in its manifest and in the inventory.
default['fleetkit']['team'] = nil
default['fleetkit']['department'] = nil
default['fleetkit']['environment'] = nil
default['fleetkit']['compliance_zone'] = nil

# The enrollment token is not an attribute (attributes are saved on the Chef
# server): a wrapper recipe puts it in node.run_state['fleetkit_enroll_token'] at
# converge time, e.g. from a Chef Vault item; rotating it needs no rebuild.

# What the device does when the server cannot be reached.
default['fleetkit']['offline_mode'] = 'cached-with-expiry'
default['fleetkit']['offline_max_age_hours'] = 24
default['fleetkit']['renew_at_percent'] = 66

# Install under this prefix instead of / (staging, tests); the trust store and the
# timer are only managed when it is /.
default['fleetkit']['root'] = '/'
default['fleetkit']['manage_trust_store'] = true
default['fleetkit']['manage_timer'] = true
default['fleetkit']['sync_interval'] = '15min'
