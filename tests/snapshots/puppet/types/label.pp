# @summary A device assignment label (team, department, ...): printable text, no control characters.
type Fleetkit::Label = Pattern[/\A[^\x00-\x1F\x7F]{1,200}\z/]
