# @summary A YAML double-quoted scalar holding exactly the given text.
#
# Backslashes and double quotes are escaped and newlines written as \n; other
# control characters are refused by the callers' types.
#
# @param value
#   The text to quote.
# @return [String] The quoted scalar.
function fleetkit::yaml_string(String $value) >> String {
  $escaped = regsubst(regsubst(regsubst($value, '\\\\', '\\\\\\\\', 'G'), '"', '\\\\"', 'G'), "\n", '\\\\n', 'G')
  "\"${escaped}\""
}
