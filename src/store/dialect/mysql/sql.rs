//! The statements of the MySQL dialect whose text is fixed, and the rows they return.
