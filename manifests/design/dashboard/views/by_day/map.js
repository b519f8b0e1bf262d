function (doc) {
  // Group by [year, month, day] so group_level can roll up to months and years.
  var date = doc.created_at || doc.createdAt;
  if (typeof date === "string" && date.length >= 10) {
    emit([date.slice(0, 4), date.slice(5, 7), date.slice(8, 10)], 1);
  }
}
