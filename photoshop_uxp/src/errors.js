// @ts-check
/** Problems the user can fix, as opposed to bugs: shown in the panel as they are. */
"use strict";

/** A panel input the user must fix; `field` names the setting. */
class InputProblem extends Error {
  /**
   * @param {string} field
   * @param {string} message the whole sentence, starting with the input's label
   */
  constructor(field, message) {
    super(message);
    this.field = field;
  }
}

/** Something in Photoshop the user can fix: no document, an empty layer, no selection, … */
class HostProblem extends Error {}

module.exports = { InputProblem, HostProblem };
