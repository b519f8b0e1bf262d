function (doc) {
  // Users per sign-up day, as [year, month, day] (group_level rolls up to months and years). The app's back
  // end writes signed_up_at when it creates the user; users without it are counted under null.
  if (doc.type === "user") {
    var date = doc.signed_up_at;
    emit(typeof date === "string" && date.length >= 10 ? [date.slice(0, 4), date.slice(5, 7), date.slice(8, 10)] : null, 1);
  }
}
