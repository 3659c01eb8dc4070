/// A command that only reads or changes jobs found the table without the schema this worker
/// uses (none yet, or an older one): it does not create or upgrade it.
struct SchemaNotCurrent: Error, CustomStringConvertible {
    var table: String
    var location: String

    var description: String {
        "the jobs table \(table) in \(location) does not have this worker's schema yet (or has an older one): run `worker migrate`, "
            + "or start `worker run` (with AUTO_MIGRATE on); commands that only read or change jobs never create or upgrade it"
    }
}
