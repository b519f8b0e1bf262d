function (newDoc, oldDoc, userCtx) {
  // The panel's database is public so that anyone can load the sign-in page (an admin-only database answers
  // 401 before any page could ask for a password), but only server admins may change what it serves.
  if (userCtx.roles.indexOf("_admin") === -1) {
    throw({forbidden: "the panel's database is read-only: its content is deployed by reconcile apply"});
  }
}
