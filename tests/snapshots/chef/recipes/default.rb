# frozen_string_literal: true

#
# Cookbook:: fleetkit
# Recipe:: default
#
# Installs the fleetkit agent for the org in attributes/default.rb, registers the
# device once and keeps its signed policy current. The device manifest is then available as
# node['hints']['fleetkit'] (the agent writes the Ohai hint).

settings = node['fleetkit']
root = settings['root']
prefix = root.sub(%r{/+\z}, '')
bin = "#{prefix}/usr/local/bin/fleetkit"
arch = { 'x86_64' => 'x86_64', 'amd64' => 'x86_64', 'aarch64' => 'arm64', 'arm64' => 'arm64' }
platform = "linux-#{arch.fetch(node['kernel']['machine'], node['kernel']['machine'])}"
shipped = ['linux-x86_64']
unless shipped.include?(platform)
  raise "no fleetkit agent for #{platform}; this cookbook ships #{shipped.join(', ')}: " \
        'add it under agents: in fleetkit.yaml and build again'
end

%w[/usr/local/bin /etc/fleetkit /etc/systemd/system /var/lib/fleetkit].each do |dir|
  directory "#{prefix}#{dir}" do
    recursive true
    mode dir == '/var/lib/fleetkit' ? '0711' : '0755'
  end
end

cookbook_file bin do
  source "fleetkit-#{platform}"
  mode '0755'
end

%w[anchors.json bundle.json].each do |file|
  cookbook_file "#{prefix}/etc/fleetkit/#{file}" do
    source file
    mode '0644'
  end
end

template "#{prefix}/etc/fleetkit/agent.yaml" do
  source 'agent.yaml.erb'
  mode '0644'
  variables(
    org: settings['org'],
    server_url: settings['server_url'],
    labels: {
      'team' => settings['team'],
      'department' => settings['department'],
      'environment' => settings['environment'],
      'compliance_zone' => settings['compliance_zone']
    },
    offline_mode: settings['offline_mode'],
    offline_max_age_hours: settings['offline_max_age_hours'].to_i,
    renew_at_percent: settings['renew_at_percent'].to_i
  )
end

%w[fleetkit-sync.service fleetkit-sync.timer].each do |unit|
  template "#{prefix}/etc/systemd/system/#{unit}" do
    source "#{unit}.erb"
    mode '0644'
    variables(bin: bin, root: root, prefix: prefix, interval: settings['sync_interval'])
  end
end

if settings['manage_trust_store'] && root == '/'
  redhat = node['platform_family'] == 'rhel'
  ca_file = if redhat
              '/etc/pki/ca-trust/source/anchors/fleetkit-acme_corp.crt'
            else
              '/usr/local/share/ca-certificates/fleetkit-acme_corp.crt'
            end
  execute 'fleetkit update trust store' do
    command [redhat ? 'update-ca-trust' : 'update-ca-certificates']
    action :nothing
  end
  cookbook_file ca_file do
    source 'root-ca.pem'
    mode '0644'
    notifies :run, 'execute[fleetkit update trust store]', :immediately
  end
end

execute 'fleetkit agent register' do
  command [bin, 'agent', 'register', '--root', root]
  creates "#{prefix}/var/lib/fleetkit/identity.pem"
  environment('FLEETKIT_ENROLL_TOKEN' => node.run_state['fleetkit_enroll_token'].to_s)
  returns [0, 75]
  sensitive true
end

# Claude Code's managed settings, from the policy in force (every sync keeps them
# current); someone else's file is left alone, and the guard says so.
execute 'fleetkit claude-code settings' do
  command [bin, 'agent', 'claude-settings', '--root', root]
  not_if { shell_out(bin, 'agent', 'claude-settings', '--check', '--root', root).exitstatus.zero? }
end

if settings['manage_timer'] && root == '/' && node['init_package'] == 'systemd'
  service 'fleetkit-sync.timer' do
    action %i[enable start]
  end
end
